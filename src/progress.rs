//! Progress bars for long work (indicatif), hidden when `BONE_AGE_PROGRESS=0`.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `len` items with rate and ETA.
pub fn bar(len: u64, label: &str) -> ProgressBar {
    styled(
        len,
        label,
        "{msg:>14} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}",
    )
}

/// A bar over `len` bytes with transfer rate and ETA.
pub fn bytes(len: u64, label: &str) -> ProgressBar {
    styled(
        len,
        label,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
}

fn styled(len: u64, label: &str, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(label.to_string());
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    if std::env::var("BONE_AGE_PROGRESS").is_ok_and(|v| v == "0") {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}
