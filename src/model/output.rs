//! [`Outputs`]: named tensors borrowed from the workspace.

/// One named output tensor.
#[derive(Debug, Clone, Copy)]
pub struct Output<'w> {
    /// transformers' output name (`logits`, `last_hidden_state`, ...).
    pub name: &'static str,
    shape: [usize; 3],
    rank: usize,
    /// Row-major values.
    pub data: &'w [f32],
}

impl Output<'_> {
    /// Dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape[..self.rank]
    }
}

/// The outputs of one run (at most two), borrowing the workspace.
#[derive(Debug, Clone, Copy)]
pub struct Outputs<'w> {
    items: [Option<Output<'w>>; 2],
}

impl<'w> Outputs<'w> {
    pub(super) fn new() -> Self {
        Outputs {
            items: [None, None],
        }
    }

    pub(super) fn push(&mut self, name: &'static str, shape: &[usize], data: &'w [f32]) {
        let mut s = [0usize; 3];
        s[..shape.len()].copy_from_slice(shape);
        let o = Output {
            name,
            shape: s,
            rank: shape.len(),
            data,
        };
        if let Some(slot) = self.items.iter_mut().find(|x| x.is_none()) {
            *slot = Some(o);
        }
    }

    /// The output called `name`.
    pub fn get(&self, name: &str) -> Option<&Output<'w>> {
        self.iter().find(|o| o.name == name)
    }

    /// All outputs, in transformers' order.
    pub fn iter(&self) -> impl Iterator<Item = &Output<'w>> {
        self.items.iter().flatten()
    }
}
