//! Running the real binary: every child is waited for (reaped) before a test returns.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub fn workshop() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_workshop"));
    c.env_remove("WORKSHOP_LOG");
    // Tests run in parallel: every node listens on a free port (found via its endpoint file).
    c.env("WORKSHOP_LISTEN", "127.0.0.1:0");
    c.env_remove("WORKSHOP_COOKIE");
    c.env_remove("WORKSHOP_NODE");
    c
}

/// Run `workshop console` with `script` on standard input, in `dir`.
pub fn console_stdin(dir: &Path, script: &str) -> Output {
    let mut child = workshop()
        .arg("console")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn workshop console");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    child.wait_with_output().expect("wait for workshop console")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
