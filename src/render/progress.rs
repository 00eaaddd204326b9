//! Live progress of image builds and pulls in the human view on a terminal: one spinner line per
//! image, showing the builder's current phase and the time so far, replaced by one summary line
//! when the image is ready. Other lines print above the spinners.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The spinners of the images being built or pulled now, drawn on stdout.
pub(super) struct BuildBars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    /// Columns a phase may take.
    width: usize,
}

impl BuildBars {
    /// Spinners drawn on stdout, `width` columns wide.
    pub(super) fn stdout(width: usize) -> BuildBars {
        BuildBars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: HashMap::new(),
            width,
        }
    }

    /// Shows `phase` on the spinner of `service`'s image, starting one when it has none.
    pub(super) fn phase(&mut self, service: &str, phase: &str) {
        let width = self.width;
        let bar = self.bars.entry(service.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(spinner_style());
            bar.set_prefix(service.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        // `{prefix}` and the elapsed time take about a third of the line.
        bar.set_message(super::clip(
            phase,
            width.saturating_sub(service.len() + 16).max(20),
        ));
    }

    /// Ends `service`'s spinner, if it has one, leaving no trace of it.
    pub(super) fn finish(&mut self, service: &str) {
        if let Some(bar) = self.bars.remove(service) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    /// Writes `text` above the spinners (or plainly when there are none).
    pub(super) fn print(&self, text: &str) -> std::io::Result<()> {
        let write = || {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()
        };
        if self.bars.is_empty() {
            write()
        } else {
            self.multi.suspend(write)
        }
    }
}

impl Drop for BuildBars {
    fn drop(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
    }
}

fn spinner_style() -> ProgressStyle {
    // The template is a constant known to parse; fall back to the default spinner all the same.
    ProgressStyle::with_template("  {spinner} {prefix}: {wide_msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The phase of a builder output line worth showing on the spinner: Docker's classic builder's
/// `Step 3/7 : RUN …` and Podman's (buildah's) `STEP 3/7: RUN …` lines, with `3/7` as a
/// fraction; `None` for every other line.
pub(crate) fn build_phase(line: &str) -> Option<(String, f64)> {
    let line = line.trim();
    let rest = line
        .strip_prefix("Step ")
        .or_else(|| line.strip_prefix("STEP "))?;
    let (count, what) = rest.split_once(':')?;
    let count = count.trim();
    let (done, total) = count.split_once('/')?;
    let done: f64 = done.parse().ok()?;
    let total: f64 = total.parse().ok()?;
    (total > 0.0).then(|| (format!("step {count}: {}", what.trim()), done / total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_builders_step_lines_are_phases() {
        assert_eq!(
            build_phase("Step 3/4 : RUN uv tool install mcp-server-time"),
            Some(("step 3/4: RUN uv tool install mcp-server-time".into(), 0.75))
        );
        assert_eq!(
            build_phase("STEP 2/4: COPY server /srv"),
            Some(("step 2/4: COPY server /srv".into(), 0.5))
        );
        assert_eq!(build_phase(" ---> Running in 1c2d"), None);
        assert_eq!(build_phase("Step x/4 : RUN"), None);
        assert_eq!(build_phase("Step 1/0 : FROM scratch"), None);
    }
}
