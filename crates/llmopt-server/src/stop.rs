//! Stop strings over streamed text: text that could still be the start of a stop string is held
//! back, so a client never sees the beginning of a stop string that later completes.

/// Finds the first stop string in a stream of text pieces.
#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        Self { stops, held: String::new() }
    }

    /// Adds `text`; returns the text now safe to show and whether a stop string was found (the
    /// text then ends just before it, and the rest is dropped).
    pub(crate) fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.held.push_str(text);
        let first = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = first {
            self.held.truncate(at);
            return (std::mem::take(&mut self.held), true);
        }
        let keep = self.stops.iter().map(|s| self.partial(s)).max().unwrap_or(0);
        let out = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        (out, false)
    }

    /// The longest end of the held text that is a proper prefix of `stop`.
    fn partial(&self, stop: &str) -> usize {
        (1..stop.len())
            .rev()
            .find(|&k| stop.is_char_boundary(k) && self.held.ends_with(&stop[..k]))
            .unwrap_or(0)
    }

    /// The held text, at the end of the stream (no stop string completed).
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (text, stopped) = m.push(p);
            out.push_str(&text);
            if stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn text_stops_before_the_first_stop_string() {
        assert_eq!(run(&["END"], &["abc", "E", "N", "D", "more"]), ("abc".into(), true));
        assert_eq!(run(&["END"], &["abcEN", "Dx"]), ("abc".into(), true));
        assert_eq!(run(&["b", "cd"], &["a", "cdb"]), ("a".into(), true), "the earliest wins");
        assert_eq!(run(&["\n\n"], &["x\n", "y\n", "\nz"]), ("x\ny".into(), true));
        assert_eq!(run(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
    }

    #[test]
    fn a_partial_match_is_released_when_it_fails_or_the_stream_ends() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("xE"), ("x".into(), false), "E is held back");
        assert_eq!(m.push("N"), (String::new(), false));
        assert_eq!(m.push("O"), ("ENO".into(), false));
        assert_eq!(m.push("EN"), (String::new(), false));
        assert_eq!(m.finish(), "EN");
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&["ab"], &["€a"]), ("€a".into(), false));
    }
}
