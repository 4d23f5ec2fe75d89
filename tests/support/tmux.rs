//! A program in a real terminal, driven through tmux.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A program in a real terminal: a tmux session on a private socket (tmux is installed by
/// scripts/test.sh). The server is killed when this is dropped.
pub struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    /// Start `command` (a shell command line) in `cwd`, in a `width`×`height` terminal.
    pub fn start(name: &str, cwd: &Path, command: &str, width: u16, height: u16) -> Tmux {
        let t = Tmux {
            socket: format!("gm{name}-{}", std::process::id()),
            session: "s",
        };
        let (w, h, dir) = (
            width.to_string(),
            height.to_string(),
            cwd.to_string_lossy().to_string(),
        );
        t.run(&[
            "new-session",
            "-d",
            "-s",
            t.session,
            "-x",
            &w,
            "-y",
            &h,
            "-c",
            &dir,
            command,
        ]);
        t
    }

    /// A tmux command on this socket.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is installed by scripts/test.sh")
    }

    /// Send keys (tmux key names, e.g. "Enter", "C-c") to the session.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.session];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Type `text` literally, then Enter.
    pub fn line(&self, text: &str) {
        self.run(&["send-keys", "-t", self.session, "-l", text]);
        self.keys(&["Enter"]);
    }

    /// What the terminal shows, with up to 200 lines of scrollback.
    pub fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-200", "-t", self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait (up to `secs`) until the screen shows `text`, and a moment more for the program to
    /// settle; returns the screen.
    pub fn wait_for(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.contains(text) {
                std::thread::sleep(Duration::from_millis(200));
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {text:?} on screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Is the program still running?
    pub fn alive(&self) -> bool {
        self.run(&["has-session", "-t", self.session])
            .status
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
