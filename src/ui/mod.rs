//! Terminal output: stage headings, info/success/warn lines, tables, spinners, confirmation.
//!
//! Human-readable lines go to stdout; warnings and errors to stderr. Spinners draw on stderr
//! only when it is a terminal. Colour is off when the output is not a terminal or `NO_COLOR`
//! is set, and every line still reads well without it.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use console::Style;
use indicatif::{ProgressBar, ProgressStyle};

/// The user's display preferences (`[ui]` in config.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefs {
    /// Symbols in stage, success and warning lines.
    pub emoji: bool,
    /// Colour on terminals (`NO_COLOR` still turns it off).
    pub color: bool,
    /// Leave out `info` detail lines.
    pub compact: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            emoji: false,
            color: true,
            compact: false,
        }
    }
}

static PREFS: std::sync::OnceLock<Prefs> = std::sync::OnceLock::new();

fn spinners() -> &'static indicatif::MultiProgress {
    static MULTI: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
    MULTI.get_or_init(indicatif::MultiProgress::new)
}

/// Set the process's display preferences once, before any output (from the settings).
pub fn set_prefs(prefs: Prefs) {
    let _ = PREFS.set(prefs);
}

fn prefs() -> Prefs {
    PREFS.get().copied().unwrap_or_default()
}

/// How the run talks to the user.
#[derive(Debug, Clone)]
pub struct Ui {
    prefs: Prefs,
    color: bool,
    spinners: bool,
    stdin_tty: bool,
    assume_yes: bool,
    /// Human lines go to stderr (stdout carries a result, e.g. `eval --json`).
    stdout_reserved: bool,
    /// Nothing is shown at all (a plan run only for its recorded calls).
    silent: bool,
}

impl Ui {
    /// Detect terminal and `NO_COLOR`; `assume_yes` is `--yes`.
    pub fn detect(assume_yes: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let prefs = prefs();
        Ui {
            prefs,
            color: prefs.color && !no_color && std::io::stdout().is_terminal(),
            spinners: std::io::stderr().is_terminal(),
            stdin_tty: std::io::stdin().is_terminal(),
            assume_yes,
            stdout_reserved: false,
            silent: false,
        }
    }

    /// The same, showing nothing (confirmations answer yes).
    pub fn silent(mut self) -> Self {
        self.silent = true;
        self.assume_yes = true;
        self.spinners = false;
        self
    }

    /// The same, with every human line on stderr: stdout is left for a command's result.
    pub fn with_stdout_reserved(mut self) -> Self {
        self.stdout_reserved = true;
        self.color = self.color && std::io::stderr().is_terminal();
        self
    }

    fn paint(&self, style: Style, s: &str) -> String {
        if self.color {
            style.apply_to(s).to_string()
        } else {
            s.to_string()
        }
    }

    fn out(&self, line: &str) {
        if self.silent {
            return;
        }
        if self.stdout_reserved {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
            return;
        }
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }

    /// `==> Title`: the start of a stage of the recipe.
    pub fn stage(&self, title: &str) {
        let mark = if self.prefs.emoji { "🔧 " } else { "==>" };
        self.out(&format!(
            "{} {}",
            self.paint(Style::new().cyan().bold(), mark),
            self.paint(Style::new().bold(), title)
        ));
    }

    /// A detail line (left out with `ui.compact`).
    pub fn info(&self, msg: &str) {
        if !self.prefs.compact {
            self.out(&format!("    {msg}"));
        }
    }

    /// A change to an existing resource (`~ …`, `-/+ …`): always shown, in yellow.
    pub fn change(&self, msg: &str) {
        self.out(&format!("  {}", self.paint(Style::new().yellow(), msg)));
    }

    /// A line that is always shown (a command's result).
    pub fn line(&self, msg: &str) {
        self.out(msg);
    }

    pub fn success(&self, msg: &str) {
        let mark = if self.prefs.emoji { "✅ " } else { " ok" };
        self.out(&format!(
            "{} {msg}",
            self.paint(Style::new().green().bold(), mark)
        ));
    }

    /// Style `text` as good (green), warning (yellow) or bad (red) news, when colour is on.
    pub fn tone(&self, text: &str, tone: Tone) -> String {
        let style = match tone {
            Tone::Good => Style::new().green(),
            Tone::Warn => Style::new().yellow(),
            Tone::Bad => Style::new().red().bold(),
            Tone::Plain => return text.to_string(),
        };
        self.paint(style, text)
    }

    /// A symbol for a tone (empty without `ui.emoji`).
    pub fn mark(&self, tone: Tone) -> &'static str {
        match (self.prefs.emoji, tone) {
            (false, _) | (true, Tone::Plain) => "",
            (true, Tone::Good) => "🟢 ",
            (true, Tone::Warn) => "🟡 ",
            (true, Tone::Bad) => "🔴 ",
        }
    }

    pub fn color(&self) -> bool {
        self.color
    }

    pub fn warn(&self, msg: &str) {
        if self.silent {
            return;
        }
        let line = format!(
            "{}{} {msg}",
            if self.prefs.emoji { "⚠️  " } else { "" },
            self.paint(Style::new().yellow().bold(), "warning:")
        );
        // Above any spinner (they share stderr), not through it.
        spinners().suspend(|| {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        });
    }

    /// A plain table with a header row; columns padded to their widest cell.
    pub fn table(&self, headers: &[String], rows: &[Vec<String>]) {
        self.out(&render_table(headers, rows, |h| {
            self.paint(Style::new().bold(), h)
        }));
    }

    /// Whether [`Ui::confirm`] can get an answer (`--yes`, a terminal, or nothing shown).
    pub fn can_confirm(&self) -> bool {
        self.assume_yes || self.silent || self.stdin_tty
    }

    /// Ask a yes/no question. `--yes` answers yes; without a terminal (and without `--yes`)
    /// the answer is an error rather than a guess.
    pub fn confirm(&self, question: &str) -> Result<bool, String> {
        if self.assume_yes {
            self.info(&format!("{question} yes (--yes)"));
            return Ok(true);
        }
        if self.silent {
            return Ok(true);
        }
        if !self.stdin_tty {
            return Err(format!(
                "cannot ask \"{question}\" without a terminal; pass --yes to confirm non-interactively"
            ));
        }
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "{question} [y/N] ");
        let _ = e.flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| e.to_string())?;
        Ok(matches!(
            answer.trim().to_ascii_lowercase().as_str(),
            "y" | "yes"
        ))
    }

    /// Ask before changing something that runs: on a terminal the user answers (`--yes`
    /// answers yes); without one (CI, a scheduled re-run) the change goes ahead, said so.
    pub fn approve(&self, question: &str) -> Result<bool, String> {
        if !self.assume_yes && !self.silent && !self.stdin_tty {
            self.info(&format!("{question} yes (no terminal to ask on)"));
            return Ok(true);
        }
        self.confirm(question)
    }

    /// A spinner for a wait, showing elapsed time; prints a final line when finished.
    pub fn wait(&self, what: &str) -> Waiting {
        let bar = if self.spinners {
            // One set of spinners for the process: waits in `parallel` steps share the screen.
            let bar = spinners().add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                    .expect("valid template"),
            );
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            None
        };
        Waiting {
            what: what.to_string(),
            bar,
            started: Instant::now(),
            ui: self.clone(),
            last_line: std::sync::Mutex::new(Instant::now()),
        }
    }
}

/// How a value reads: for colour and symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Warn,
    Bad,
    Plain,
}

/// An ongoing wait (see [`Ui::wait`]).
pub struct Waiting {
    what: String,
    bar: Option<ProgressBar>,
    started: Instant,
    ui: Ui,
    /// Without a terminal, a plain progress line at most every 30 s (so CI logs show life).
    last_line: std::sync::Mutex<Instant>,
}

impl Waiting {
    /// Show the current state, e.g. `pending`, and the time left.
    pub fn update(&self, state: &str, left: Duration) {
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!("{}: {state}, {}s left", self.what, left.as_secs()))
            }
            None => {
                let mut last = self.last_line.lock().unwrap();
                if last.elapsed() >= Duration::from_secs(30) {
                    *last = Instant::now();
                    self.ui.info(&format!(
                        "{}: {state} ({} so far, {}s left)",
                        self.what,
                        fmt_duration(self.started.elapsed()),
                        left.as_secs()
                    ));
                }
            }
        }
    }

    /// Finish with a one-line result; returns how long the wait took.
    pub fn done(self, result: &str) -> Duration {
        let took = self.started.elapsed();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.ui
            .info(&format!("{}: {result} ({})", self.what, fmt_duration(took)));
        took
    }

    pub fn failed(self) -> Duration {
        let took = self.started.elapsed();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        took
    }
}

/// A size in decimal units, as Docker and Ollama show them: `512 B`, `1.2 GB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Text from elsewhere (an instance's boot report or logs) made safe to print: control
/// characters — terminal escape sequences among them — shown as `?`, tabs kept.
pub fn printable(text: &str) -> String {
    // Bidirectional and invisible formatting characters too: they can make text read as
    // something it is not.
    let hidden = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    text.chars()
        .map(|c| {
            if (c.is_control() && c != '\t') || hidden(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// `1.2s`, `3m 04s`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Columns padded to their widest cell, a header row first, indented four spaces.
pub fn render_table(
    headers: &[String],
    rows: &[Vec<String>],
    bold: impl Fn(&str) -> String,
) -> String {
    let cols = headers
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0usize; cols];
    for row in std::iter::once(headers).chain(rows.iter().map(Vec::as_slice)) {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(console::measure_text_width(cell));
        }
    }
    let line = |row: &[String], style: &dyn Fn(&str) -> String| {
        let mut s = String::from("    ");
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            let pad = w - console::measure_text_width(cell);
            s.push_str(&style(cell));
            if i + 1 < cols {
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(headers, &bold)];
    out.extend(rows.iter().map(|r| line(r, &|c: &str| c.to_string())));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_decimal_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_000), "1.0 kB");
        assert_eq!(bytes(431_900_000), "431.9 MB");
        assert_eq!(bytes(2_019_393_189), "2.0 GB");
        assert_eq!(bytes(u64::MAX), "18446744.1 TB");
    }

    #[test]
    fn table_pads_columns() {
        let t = render_table(
            &["SERVICE".into(), "STATUS".into()],
            &[
                vec!["n8n".into(), "healthy".into()],
                vec!["postgres".into(), "down".into()],
            ],
            |s| s.to_string(),
        );
        assert_eq!(
            t,
            "    SERVICE   STATUS\n    n8n       healthy\n    postgres  down"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(184)), "3m 04s");
    }
}
