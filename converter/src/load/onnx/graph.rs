//! A read-only index over an ONNX `GraphProto`: who produces and who consumes each value,
//! which values are constants, and decoding of constant tensors.
//!
//! Everything here treats the file as untrusted: every shape product is checked, every
//! byte length is compared with the element count, and nothing indexes without a check.
//!
//! `Identity` nodes are made transparent: [`Graph::resolve`] follows them back to the value
//! they copy, and consumers are indexed by the resolved name. The TorchScript exporter
//! reaches the shared ALBERT layer through 30 such copies, so without this every layer
//! call after the first would look like it reads a different weight.

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, TensorProto};

/// ONNX `TensorProto.DataType` codes this reader decodes.
pub(crate) mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const DOUBLE: i32 = 11;

    /// Human-readable name for messages.
    pub fn name(code: i32) -> &'static str {
        match code {
            FLOAT => "float32",
            UINT8 => "uint8",
            INT8 => "int8",
            4 => "uint16",
            5 => "int16",
            INT32 => "int32",
            INT64 => "int64",
            8 => "string",
            BOOL => "bool",
            10 => "float16",
            DOUBLE => "float64",
            16 => "bfloat16",
            _ => "an unknown type",
        }
    }
}

/// Upper bound on the element count of one constant (2^31): far above any ALBERT tensor,
/// low enough that a forged shape cannot make us allocate without bound.
const MAX_ELEMENTS: usize = 1 << 31;

/// The values of a decoded constant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    I8(Vec<i8>),
}

/// A decoded constant tensor (an initializer or the value of a `Constant` node).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Const {
    pub shape: Vec<usize>,
    pub values: Values,
}

impl Const {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.values {
            Values::F32(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::U8(v) => v.len(),
            Values::I8(v) => v.len(),
        }
    }

    /// The value as f64 if this constant holds exactly one number of any numeric type.
    pub fn scalar(&self) -> Option<f64> {
        if self.len() != 1 {
            return None;
        }
        Some(match &self.values {
            Values::F32(v) => v[0] as f64,
            Values::I64(v) => v[0] as f64,
            Values::U8(v) => v[0] as f64,
            Values::I8(v) => v[0] as f64,
        })
    }

    /// The values as i64, if this is an integer tensor.
    pub fn as_i64s(&self) -> Option<Vec<i64>> {
        match &self.values {
            Values::I64(v) => Some(v.clone()),
            Values::U8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            Values::I8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            Values::F32(_) => None,
        }
    }

    /// Takes the f32 data out, or says what was found instead.
    pub fn into_f32(self, what: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        match self.values {
            Values::F32(v) => Ok((self.shape, v)),
            _ => bail!("{what}: expected float32 values"),
        }
    }
}

/// Where a named value comes from, when it is a constant.
#[derive(Debug, Clone, Copy)]
enum ConstSource {
    /// Index into `graph.initializer`.
    Initializer(usize),
    /// Index into `graph.node` (a `Constant` node).
    Node(usize),
}

/// Producer/consumer index over one graph.
pub(crate) struct Graph<'a> {
    g: &'a GraphProto,
    /// Folder of the model file, for tensors stored as external data.
    dir: Option<PathBuf>,
    /// Output value name -> index of the node that produces it.
    producer: HashMap<&'a str, usize>,
    /// Resolved value name -> indices of the (non-Identity) nodes that read it.
    consumers: HashMap<String, Vec<usize>>,
    /// Value name -> constant source.
    consts: HashMap<&'a str, ConstSource>,
    /// Graph inputs that are not initializers (the real runtime inputs).
    pub inputs: Vec<&'a str>,
    /// Resolved names of the graph outputs, with their declared names.
    pub outputs: Vec<(String, &'a str)>,
}

impl<'a> Graph<'a> {
    /// Indexes `g`. Fails on duplicate value names and `Identity` cycles.
    pub fn new(g: &'a GraphProto, dir: Option<&Path>) -> Result<Self> {
        let mut consts = HashMap::new();
        for (i, t) in g.initializer.iter().enumerate() {
            consts.insert(t.name.as_str(), ConstSource::Initializer(i));
        }
        let mut producer = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            // Every node must produce something: later code relies on `output[0]` existing.
            ensure!(
                n.output.first().is_some_and(|o| !o.is_empty()),
                "{} has no output (the file is not a valid ONNX graph)",
                describe(n)
            );
            for o in &n.output {
                if o.is_empty() {
                    continue; // optional output left out
                }
                if producer.insert(o.as_str(), i).is_some() || consts.contains_key(o.as_str()) {
                    bail!("value {o:?} is produced twice in the graph (the file is not a valid ONNX graph)");
                }
            }
            if n.op_type == "Constant" && n.domain.is_empty() {
                if let Some(o) = n.output.first() {
                    consts.insert(o.as_str(), ConstSource::Node(i));
                }
            }
        }
        let inputs = g
            .input
            .iter()
            .map(|v| v.name.as_str())
            .filter(|n| !consts.contains_key(n))
            .collect();
        let mut graph = Graph {
            g,
            dir: dir.map(Path::to_path_buf),
            producer,
            consumers: HashMap::new(),
            consts,
            inputs,
            outputs: Vec::new(),
        };
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            if graph.is_identity(n) {
                continue;
            }
            for inp in &n.input {
                if inp.is_empty() {
                    continue;
                }
                let r = graph.resolve(inp)?.to_string();
                let list = consumers.entry(r).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        graph.consumers = consumers;
        let mut outputs = Vec::new();
        for o in &g.output {
            outputs.push((graph.resolve(&o.name)?.to_string(), o.name.as_str()));
        }
        graph.outputs = outputs;
        Ok(graph)
    }

    fn is_identity(&self, n: &NodeProto) -> bool {
        n.op_type == "Identity" && n.domain.is_empty() && n.input.len() == 1 && n.output.len() == 1
    }

    /// All nodes, in file order.
    pub fn nodes(&self) -> &'a [NodeProto] {
        &self.g.node
    }

    /// Node by index (indices come from this graph, so they are in range).
    pub fn node(&self, i: usize) -> &'a NodeProto {
        &self.g.node[i]
    }

    /// Follows `Identity` nodes back to the value they copy.
    pub fn resolve<'s>(&'s self, name: &'s str) -> Result<&'s str> {
        let mut cur = name;
        for _ in 0..=self.g.node.len() {
            match self.producer.get(cur) {
                Some(&i) if self.is_identity(&self.g.node[i]) => {
                    cur = self.g.node[i].input[0].as_str()
                }
                _ => return Ok(cur),
            }
        }
        bail!("Identity nodes form a cycle at {name:?}")
    }

    /// The node producing `name` (after resolving Identity), if any.
    pub fn producer(&self, name: &str) -> Option<usize> {
        let r = self.resolve(name).ok()?;
        self.producer.get(r).copied()
    }

    /// Nodes reading `name` (or any Identity copy of it).
    pub fn consumers(&self, name: &str) -> &[usize] {
        match self.resolve(name) {
            Ok(r) => self.consumers.get(r).map(Vec::as_slice).unwrap_or(&[]),
            Err(_) => &[],
        }
    }

    /// Consumers that do real work: `Shape` nodes only read the dimensions, so they are left out.
    pub fn data_consumers(&self, name: &str) -> Vec<usize> {
        self.consumers(name)
            .iter()
            .copied()
            .filter(|&i| self.node(i).op_type != "Shape")
            .collect()
    }

    /// True when `a` and `b` name the same value once Identity copies are followed.
    pub fn same(&self, a: &str, b: &str) -> bool {
        match (self.resolve(a), self.resolve(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }

    /// True for a runtime graph input (not an initializer).
    pub fn is_graph_input(&self, name: &str) -> bool {
        self.resolve(name)
            .map(|r| self.inputs.contains(&r))
            .unwrap_or(false)
    }

    /// True when the value is one of the graph outputs.
    pub fn is_graph_output(&self, name: &str) -> bool {
        match self.resolve(name) {
            Ok(r) => self.outputs.iter().any(|(o, _)| o == r),
            Err(_) => false,
        }
    }

    /// The declared graph-output name of a value, if it is one.
    pub fn output_name(&self, name: &str) -> Option<&'a str> {
        let r = self.resolve(name).ok()?;
        self.outputs.iter().find(|(o, _)| o == r).map(|(_, n)| *n)
    }

    /// True when the value is a constant (initializer or `Constant` node output).
    pub fn is_const(&self, name: &str) -> bool {
        self.resolve(name)
            .map(|r| self.consts.contains_key(r))
            .unwrap_or(false)
    }

    /// A stable identity for a constant: the resolved name it is stored under.
    pub fn const_key(&self, name: &str) -> String {
        self.resolve(name).unwrap_or(name).to_string()
    }

    /// Decodes the constant `name`, or `Ok(None)` if it is not a constant.
    pub fn constant(&self, name: &str) -> Result<Option<Const>> {
        let r = self.resolve(name)?;
        match self.consts.get(r) {
            None => Ok(None),
            Some(ConstSource::Initializer(i)) => {
                decode_tensor(&self.g.initializer[*i], self.dir.as_deref()).map(Some)
            }
            Some(ConstSource::Node(i)) => {
                decode_constant_node(&self.g.node[*i], self.dir.as_deref()).map(Some)
            }
        }
    }

    /// Decodes a constant that must exist.
    pub fn require_const(&self, name: &str, what: &str) -> Result<Const> {
        self.constant(name)?
            .ok_or_else(|| anyhow!("{what}: {name:?} is not a constant"))
    }

    /// Paths of external data files referenced by initializers (deduplicated).
    pub fn external_files(&self) -> Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = Vec::new();
        for t in &self.g.initializer {
            if t.data_location == Some(1) {
                let (p, _, _) = external_location(t, self.dir.as_deref())?;
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }
}

/// Attribute lookup on a node.
pub(crate) fn attr<'n>(n: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// Integer attribute, or `default` when absent.
pub(crate) fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).map(|a| a.i).unwrap_or(default)
}

/// Float attribute, or `default` when absent.
pub(crate) fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).map(|a| a.f).unwrap_or(default)
}

/// Integer-list attribute, if present.
pub(crate) fn attr_ints<'n>(n: &'n NodeProto, name: &str) -> Option<&'n [i64]> {
    attr(n, name).map(|a| a.ints.as_slice())
}

/// String attribute, if present.
pub(crate) fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// Short description of a node for messages: `MatMul "/albert/.../MatMul"`.
pub(crate) fn describe(n: &NodeProto) -> String {
    if n.name.is_empty() {
        format!(
            "{} (producing {:?})",
            n.op_type,
            n.output.first().map(String::as_str).unwrap_or("")
        )
    } else {
        format!("{} {:?}", n.op_type, n.name)
    }
}

fn decode_constant_node(n: &NodeProto, dir: Option<&Path>) -> Result<Const> {
    let a = n
        .attribute
        .first()
        .ok_or_else(|| anyhow!("{} has no value attribute", describe(n)))?;
    match a.name.as_str() {
        "value" => {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| anyhow!("{}: value attribute has no tensor", describe(n)))?;
            decode_tensor(t, dir)
        }
        "value_float" => Ok(Const {
            shape: vec![],
            values: Values::F32(vec![a.f]),
        }),
        "value_floats" => Ok(Const {
            shape: vec![a.floats.len()],
            values: Values::F32(a.floats.clone()),
        }),
        "value_int" => Ok(Const {
            shape: vec![],
            values: Values::I64(vec![a.i]),
        }),
        "value_ints" => Ok(Const {
            shape: vec![a.ints.len()],
            values: Values::I64(a.ints.clone()),
        }),
        other => bail!(
            "{}: constant attribute {other:?} is not supported",
            describe(n)
        ),
    }
}

/// Resolves an external-data reference to (file, offset, length), refusing paths that leave
/// the model's folder.
fn external_location(t: &TensorProto, dir: Option<&Path>) -> Result<(PathBuf, u64, Option<u64>)> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.clone()),
            "offset" => {
                offset = kv
                    .value
                    .parse()
                    .with_context(|| format!("tensor {:?}: bad external offset", t.name))?
            }
            "length" => {
                length = Some(
                    kv.value
                        .parse()
                        .with_context(|| format!("tensor {:?}: bad external length", t.name))?,
                )
            }
            _ => {}
        }
    }
    let location =
        location.ok_or_else(|| anyhow!("tensor {:?}: external data without a location", t.name))?;
    let rel = Path::new(&location);
    ensure!(
        rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
        "tensor {:?}: external data location {location:?} must be a relative path inside the model folder",
        t.name
    );
    let dir = dir.ok_or_else(|| {
        anyhow!(
            "tensor {:?}: external data, but the model folder is unknown",
            t.name
        )
    })?;
    Ok((dir.join(rel), offset, length))
}

/// Decodes one `TensorProto` (raw little-endian bytes, typed fields or external data).
pub(crate) fn decode_tensor(t: &TensorProto, dir: Option<&Path>) -> Result<Const> {
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut n: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d)
            .map_err(|_| anyhow!("tensor {:?} has a negative dimension {d}", t.name))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| anyhow!("tensor {:?}: shape {:?} is too large", t.name, t.dims))?;
        shape.push(d);
    }
    if t.segment.is_some() {
        bail!("tensor {:?} is segmented, which is not supported", t.name);
    }
    let external;
    let raw: &[u8] = if t.data_location == Some(1) {
        let (path, offset, length) = external_location(t, dir)?;
        let bytes = std::fs::read(&path)
            .with_context(|| format!("reading external data {}", path.display()))?;
        let start = usize::try_from(offset).ok().filter(|&s| s <= bytes.len());
        let start = start.ok_or_else(|| {
            anyhow!(
                "tensor {:?}: external offset past the end of the file",
                t.name
            )
        })?;
        let end = match length {
            Some(l) => usize::try_from(l).ok().and_then(|l| start.checked_add(l)),
            None => Some(bytes.len()),
        };
        let end = end.filter(|&e| e <= bytes.len()).ok_or_else(|| {
            anyhow!(
                "tensor {:?}: external data range past the end of the file",
                t.name
            )
        })?;
        external = bytes[start..end].to_vec();
        &external
    } else {
        &t.raw_data
    };
    let what = || {
        format!(
            "tensor {:?} ({}, shape {:?})",
            t.name,
            dtype::name(t.data_type),
            t.dims
        )
    };
    let values = if !raw.is_empty() || t.data_location == Some(1) {
        let width = match t.data_type {
            dtype::FLOAT | dtype::INT32 => 4,
            dtype::INT64 | dtype::DOUBLE => 8,
            dtype::UINT8 | dtype::INT8 | dtype::BOOL => 1,
            other => bail!(
                "{}: element type {} is not supported",
                what(),
                dtype::name(other)
            ),
        };
        ensure!(
            n.checked_mul(width) == Some(raw.len()),
            "{}: has {} data bytes, the shape needs {}",
            what(),
            raw.len(),
            n.saturating_mul(width)
        );
        match t.data_type {
            dtype::FLOAT => Values::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            dtype::DOUBLE => Values::F32(
                raw.chunks_exact(8)
                    .map(|c| {
                        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                    })
                    .collect(),
            ),
            dtype::INT32 => Values::I64(
                raw.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            dtype::INT64 => Values::I64(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            dtype::UINT8 | dtype::BOOL => Values::U8(raw.to_vec()),
            dtype::INT8 => Values::I8(raw.iter().map(|&b| b as i8).collect()),
            _ => unreachable!("width match above covers the same types"),
        }
    } else {
        let v = match t.data_type {
            dtype::FLOAT => Values::F32(t.float_data.clone()),
            dtype::DOUBLE => Values::F32(t.double_data.iter().map(|&x| x as f32).collect()),
            dtype::INT64 => Values::I64(t.int64_data.clone()),
            dtype::INT32 => Values::I64(t.int32_data.iter().map(|&x| x as i64).collect()),
            dtype::UINT8 | dtype::BOOL => Values::U8(
                t.int32_data
                    .iter()
                    .map(|&x| u8::try_from(x))
                    .collect::<Result<_, _>>()
                    .map_err(|_| anyhow!("{}: value out of range", what()))?,
            ),
            dtype::INT8 => Values::I8(
                t.int32_data
                    .iter()
                    .map(|&x| i8::try_from(x))
                    .collect::<Result<_, _>>()
                    .map_err(|_| anyhow!("{}: value out of range", what()))?,
            ),
            other => bail!(
                "{}: element type {} is not supported",
                what(),
                dtype::name(other)
            ),
        };
        let c = Const {
            shape: shape.clone(),
            values: v,
        };
        ensure!(
            c.len() == n,
            "{}: has {} values, the shape needs {n}",
            what(),
            c.len()
        );
        c.values
    };
    Ok(Const { shape, values })
}
