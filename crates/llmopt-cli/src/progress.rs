//! Progress bars on stderr for the long commands (indicatif hides them when stderr is not a
//! terminal), one place for their construction.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps drawn with `template` (indicatif's template syntax).
pub fn bar(len: u64, template: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    // The templates are literals in this crate, each drawn by a CLI test: a parse error is a bug.
    bar.set_style(ProgressStyle::with_template(template).expect("valid progress template"));
    bar
}
