//! Progress display: an indicatif bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How much the trainer prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Nothing but errors.
    Quiet,
    /// A progress bar (or plain progress lines when stdout is not a terminal).
    #[default]
    Normal,
}

pub(crate) enum Progress {
    Hidden,
    Bar(ProgressBar),
    /// Plain lines every `every` steps.
    Lines {
        total: u64,
        every: u64,
    },
}

impl Progress {
    pub(crate) fn new(verbosity: Verbosity, start: u64, total: u64) -> Self {
        match verbosity {
            Verbosity::Quiet => Progress::Hidden,
            Verbosity::Normal if std::io::stdout().is_terminal() => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
                let style = ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} step {pos}/{len} {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_position(start);
                bar.enable_steady_tick(Duration::from_millis(200));
                Progress::Bar(bar)
            }
            Verbosity::Normal => Progress::Lines {
                total,
                every: (total / 20).max(1),
            },
        }
    }

    pub(crate) fn update(&self, step: u64, loss: f64, samples_per_s: f64, eta_s: f64) {
        let msg = format!("loss {loss:.4} · {samples_per_s:.0} samples/s");
        match self {
            Progress::Hidden => {}
            Progress::Bar(bar) => {
                bar.set_position(step);
                bar.set_message(msg);
            }
            Progress::Lines { total, every } => {
                if step.is_multiple_of(*every) || step == *total {
                    println!("step {step}/{total} {msg} · ETA {eta_s:.0}s");
                }
            }
        }
    }

    pub(crate) fn println(&self, line: &str) {
        match self {
            Progress::Hidden => {}
            Progress::Bar(bar) => bar.println(line),
            Progress::Lines { .. } => println!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}
