//! Streaming token text: pieces are bytes, and a UTF-8 character may span tokens, so bytes are held
//! back until they form whole characters (for a terminal, or for the text of a server's stream).

use std::io::Write;

/// Collects token bytes and gives out whole UTF-8 characters as soon as they are complete.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds `bytes`; returns how many pending bytes are ready: whole characters, and byte
    /// sequences that can never become one. An incomplete character at the end waits.
    fn ready(&mut self, bytes: &[u8]) -> usize {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        }
    }

    /// Adds `bytes` and writes every complete character to `out` (invalid bytes as they are).
    pub fn push(&mut self, bytes: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        let n = self.ready(bytes);
        out.write_all(&self.pending[..n])?;
        out.flush()?;
        self.pending.drain(..n);
        Ok(())
    }

    /// Adds `bytes` and returns every complete character (invalid bytes as U+FFFD).
    pub fn push_str(&mut self, bytes: &[u8]) -> String {
        let n = self.ready(bytes);
        let text = String::from_utf8_lossy(&self.pending[..n]).into_owned();
        self.pending.drain(..n);
        text
    }

    /// Writes whatever is left.
    pub fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.pending)?;
        self.pending.clear();
        out.flush()
    }

    /// Returns whatever is left (an unfinished character as U+FFFD).
    pub fn finish_str(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
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

    #[test]
    fn strings_are_whole_characters_or_replacements() {
        let mut s = Utf8Stream::default();
        let bytes = "a€".as_bytes();
        assert_eq!(s.push_str(&bytes[..2]), "a");
        assert_eq!(s.push_str(&bytes[2..]), "€");
        assert_eq!(s.push_str(&[0xFF, b'b']), "\u{FFFD}b");
        assert_eq!(s.push_str(&bytes[1..3]), "");
        assert_eq!(s.finish_str(), "\u{FFFD}");
        assert_eq!(s.finish_str(), "");
    }
}
