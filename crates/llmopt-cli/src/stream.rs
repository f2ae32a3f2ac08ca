//! Streaming token text: pieces are bytes, and a UTF-8 character may span tokens, so bytes are held
//! back until they form whole characters.

use std::io::Write;

/// Collects token bytes and writes whole UTF-8 characters as soon as they are complete.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds `bytes` and writes every complete character to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            // An incomplete character at the end waits; an invalid byte sequence is written as is.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        out.write_all(&self.pending[..valid])?;
        out.flush()?;
        self.pending.drain(..valid);
        Ok(())
    }

    /// Writes whatever is left.
    pub fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.pending)?;
        self.pending.clear();
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_split_characters() {
        let mut s = Utf8Stream::default();
        let mut out = Vec::new();
        let bytes = "é€".as_bytes();
        s.push(&bytes[..1], &mut out).unwrap();
        assert!(out.is_empty());
        s.push(&bytes[1..3], &mut out).unwrap();
        assert_eq!(out, "é".as_bytes());
        s.push(&bytes[3..], &mut out).unwrap();
        assert_eq!(out, bytes);
    }
}
