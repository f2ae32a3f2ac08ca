//! Hooks that see the input and output of every Linear during a forward pass (calibration
//! statistics, activation ranges, timing). Off by default: the forward takes `Option<&mut dyn Observer>`.

/// Receives each Linear's input and output rows (`n_tok` rows, row-major).
pub trait Observer {
    /// Called after `name` (a GGUF weight name) ran on `n_tok` rows.
    fn on_linear(&mut self, name: &str, n_tok: usize, input: &[f32], output: &[f32]);
}
