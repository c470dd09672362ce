//! Progress bars on a terminal (indicatif draws nothing when stderr is not a TTY).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` bytes, or a hidden one when `show` is false.
pub fn bytes_bar(total: u64, show: bool, message: &str) -> ProgressBar {
    bar(
        total,
        show,
        message,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
}

/// A bar over `total` items.
pub fn count_bar(total: u64, show: bool, message: &str) -> ProgressBar {
    bar(
        total,
        show,
        message,
        "{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
    )
}

fn bar(total: u64, show: bool, message: &str, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    pb.set_message(message.to_string());
    pb
}
