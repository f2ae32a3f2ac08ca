//! Headless Chromium for the HTML report tests: a screenshot of a page, decoded to RGB pixels.
//! A missing browser fails the test with the command that installs it (`scripts/setup`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use crate::TempDir;

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one screenshot may take before the browser is killed and the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// A decoded screenshot: `width x height` pixels, 3 bytes (R, G, B) each, row by row.
#[derive(Debug)]
pub struct Screenshot {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Screenshot {
    /// The pixels as `[r, g, b]`.
    pub fn pixels(&self) -> impl Iterator<Item = [u8; 3]> + '_ {
        self.rgb.chunks_exact(3).map(|p| [p[0], p[1], p[2]])
    }

    /// Pixels of exactly this color.
    pub fn count(&self, color: (u8, u8, u8)) -> usize {
        self.pixels().filter(|p| *p == [color.0, color.1, color.2]).count()
    }

    /// Pixels that are not white or nearly so (any channel under 235).
    pub fn non_white(&self) -> usize {
        self.pixels().filter(|p| p.iter().any(|&c| c < 235)).count()
    }

    /// Different colors in the picture.
    pub fn distinct_colors(&self) -> usize {
        let mut seen: Vec<u32> = self
            .pixels()
            .map(|[r, g, b]| u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

/// The browser: `/usr/bin/chromium`, else `chromium` on `PATH`; fails the test when neither exists.
pub fn chromium() -> PathBuf {
    if Path::new(CHROMIUM).exists() {
        return CHROMIUM.into();
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("chromium")).find(|c| c.exists()));
    on_path.unwrap_or_else(|| {
        panic!(
            "{CHROMIUM} is missing: run scripts/setup (installs chromium), or as root: \
             apt-get update && apt-get install -y --no-install-recommends chromium"
        )
    })
}

/// Renders `html` in headless Chromium in a `window` of (width, height) CSS pixels at scale 1,
/// writes the screenshot to `png` and returns it decoded. Panics (fails the test) when the
/// browser is missing, fails, or takes longer than [`TIMEOUT`].
pub fn screenshot(html: &Path, window: (u32, u32), png: &Path) -> Screenshot {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let html = html.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", html.display()));
    let profile = TempDir::new(&format!("chromium-{}", RUN.fetch_add(1, Ordering::Relaxed)));
    let log = profile.path().join("chromium.log");
    let _ = std::fs::remove_file(png);
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().join("user").display()))
        .arg(format!("--window-size={},{}", window.0, window.1))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create the browser's log"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start chromium: {e}; run scripts/setup (installs chromium)")
        });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for chromium") {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took over {TIMEOUT:?}; its log:\n{}", tail(&log));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success() && png.exists(),
        "chromium failed ({status}), no {}; its log:\n{}",
        png.display(),
        tail(&log)
    );
    decode(png)
}

/// Decodes an 8-bit PNG (any color type) to RGB.
pub fn decode(png: &Path) -> Screenshot {
    let file = std::fs::File::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => {
            buf.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect()
        }
        png::ColorType::Indexed => panic!("{}: palette not expanded", png.display()),
    };
    Screenshot { width: info.width, height: info.height, rgb }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
