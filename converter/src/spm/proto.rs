//! A minimal protobuf wire-format reader, just enough for sentencepiece's `ModelProto`
//! (<https://github.com/google/sentencepiece/blob/v0.2.0/src/sentencepiece_model.proto>).
//!
//! Wire types handled: 0 (varint), 1 (fixed64), 2 (length-delimited), 5 (fixed32). Groups
//! (3, 4) are rejected. Every read is bounds-checked; truncated input is an error.

use anyhow::{bail, Result};

/// One decoded field value (payload borrowed from the input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl<'a> Value<'a> {
    /// The value as a varint, or an error naming `what`.
    pub fn varint(self, what: &str) -> Result<u64> {
        match self {
            Value::Varint(v) => Ok(v),
            other => bail!("{what}: expected a varint, found {other:?}"),
        }
    }
    /// The value as a bool (varint != 0).
    pub fn bool(self, what: &str) -> Result<bool> {
        Ok(self.varint(what)? != 0)
    }
    /// The value as length-delimited bytes.
    pub fn bytes(self, what: &str) -> Result<&'a [u8]> {
        match self {
            Value::Bytes(b) => Ok(b),
            other => bail!("{what}: expected length-delimited bytes, found {other:?}"),
        }
    }
    /// The value as a UTF-8 string.
    pub fn str(self, what: &str) -> Result<&'a str> {
        std::str::from_utf8(self.bytes(what)?)
            .map_err(|e| anyhow::anyhow!("{what}: invalid UTF-8: {e}"))
    }
    /// The value as an f32 (fixed32).
    pub fn f32(self, what: &str) -> Result<f32> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            other => bail!("{what}: expected a fixed32 float, found {other:?}"),
        }
    }
}

/// Iterates over the `(field number, value)` pairs of one message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over one encoded message.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn read_varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                bail!("truncated varint at byte {}", self.pos)
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                bail!("varint overflows 64 bits at byte {}", self.pos - 1);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint longer than 10 bytes at byte {}", self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "truncated field: {n} bytes needed at byte {}, {} left",
                    self.pos,
                    self.buf.len() - self.pos
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field, `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.read_varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            bail!("invalid field number {number}");
        }
        let value = match key & 7 {
            0 => Value::Varint(self.read_varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            2 => {
                let len = self.read_varint()?;
                let len = usize::try_from(len).map_err(|_| anyhow::anyhow!("length too large"))?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().unwrap())),
            w => bail!("unsupported wire type {w} (field {number})"),
        };
        Ok(Some((number as u32, value)))
    }
}

/// A minimal protobuf writer (the inverse of [`Reader`]), used to build test models.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    /// The encoded message so far.
    pub buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    /// Field `n` as a varint.
    pub fn uint(&mut self, n: u32, v: u64) -> &mut Self {
        self.varint(u64::from(n) << 3);
        self.varint(v);
        self
    }
    /// Field `n` as length-delimited bytes.
    pub fn bytes(&mut self, n: u32, b: &[u8]) -> &mut Self {
        self.varint((u64::from(n) << 3) | 2);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }
    /// Field `n` as a fixed32 float.
    pub fn f32(&mut self, n: u32, v: f32) -> &mut Self {
        self.varint((u64::from(n) << 3) | 5);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>> {
        let mut r = Reader::new(buf);
        let mut out = Vec::new();
        while let Some(f) = r.next_field()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn varints() {
        // field 1 varint 150 (the protobuf docs' example), field 2 varint u64::MAX.
        let mut buf = vec![0x08, 0x96, 0x01, 0x10];
        buf.extend_from_slice(&[0xff; 9]);
        buf.push(0x01);
        assert_eq!(
            all(&buf).unwrap(),
            vec![(1, Value::Varint(150)), (2, Value::Varint(u64::MAX))]
        );
    }

    #[test]
    fn varint_overflow_and_too_long() {
        let mut buf = vec![0x08];
        buf.extend_from_slice(&[0xff; 9]);
        buf.push(0x02);
        assert!(all(&buf).is_err());
        let mut buf = vec![0x08];
        buf.extend_from_slice(&[0x80; 11]);
        assert!(all(&buf).is_err());
    }

    #[test]
    fn length_delimited_fixed32_fixed64() {
        let buf = [
            0x0a, 0x03, b'a', b'b', b'c', // 1: "abc"
            0x15, 0x00, 0x00, 0x80, 0x3f, // 2: fixed32 1.0f
            0x19, 1, 2, 3, 4, 5, 6, 7, 8, // 3: fixed64
        ];
        let f = all(&buf).unwrap();
        assert_eq!(f[0], (1, Value::Bytes(b"abc")));
        assert_eq!(f[1].1.f32("x").unwrap(), 1.0);
        assert_eq!(f[2], (3, Value::Fixed64(0x0807060504030201)));
        assert_eq!(f[0].1.str("s").unwrap(), "abc");
        assert!(f[0].1.varint("v").is_err());
    }

    #[test]
    fn unknown_fields_are_returned_for_skipping() {
        // field 1000 (varint) then field 1.
        let buf = [0xc0, 0x3e, 0x05, 0x08, 0x01];
        let f = all(&buf).unwrap();
        assert_eq!(f, vec![(1000, Value::Varint(5)), (1, Value::Varint(1))]);
    }

    #[test]
    fn truncated_inputs_are_errors() {
        let buf = [0x0a, 0x03, b'a', b'b', b'c', 0x15, 0, 0, 0x80, 0x3f];
        for n in 1..buf.len() {
            if n == 5 {
                continue; // a complete first field
            }
            assert!(all(&buf[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        assert!(all(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn writer_round_trips() {
        let mut w = Writer::default();
        w.uint(1, 300)
            .bytes(2, b"xy")
            .f32(3, -2.5)
            .uint(2000, u64::MAX);
        let f = all(&w.buf).unwrap();
        assert_eq!(
            f,
            vec![
                (1, Value::Varint(300)),
                (2, Value::Bytes(b"xy")),
                (3, Value::Fixed32((-2.5f32).to_bits())),
                (2000, Value::Varint(u64::MAX)),
            ]
        );
    }

    #[test]
    fn bad_wire_types_and_field_zero() {
        assert!(all(&[0x0b]).is_err()); // wire type 3 (group)
        assert!(all(&[0x0e]).is_err()); // wire type 6
        assert!(all(&[0x00, 0x01]).is_err()); // field number 0
        assert_eq!(all(&[]).unwrap(), vec![]);
    }
}
