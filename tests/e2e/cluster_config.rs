//! `workshop node --config cluster.toml --name NAME`: a bad file is refused (file, line and
//! key named) before anything starts; a good one-node file starts a node that clients reach.

use std::path::Path;
use std::process::{Output, Stdio};

use crate::support::{text, workshop, NodeProcess};

fn write(path: &Path, content: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
}

/// `workshop node --no-setup <args>` in `cwd`, waited for (it must not start).
fn node_refused(cwd: &Path, args: &[&str]) -> Output {
    let out = workshop()
        .env_remove("WORKSHOP_LISTEN")
        .arg("node")
        .arg("--no-setup")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run workshop node");
    assert!(
        !out.status.success(),
        "the node should have refused to start: {}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    out
}

#[test]
fn a_bad_cluster_file_is_refused_with_its_line_and_key_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("bad.toml"),
        "board = \"n1\"\n\n[nodes.n1]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"n1\"\n\n[nodes.n2]\nlisen = \"127.0.0.1:0\"\n",
    );
    let out = node_refused(dir.path(), &["--config", "bad.toml", "--name", "n1"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml:8:1: unknown key \"lisen\" in [nodes.n2]"),
        "{err}"
    );
    assert!(err.contains("expected one of: listen, advertise"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Nothing started: no data dir was made, neither the file's nor the default one.
    assert!(!dir.path().join("n1").exists());
    assert!(!dir.path().join(".workshop").exists());

    // An unknown node name lists the file's nodes (here through the environment).
    write(
        &dir.path().join("good.toml"),
        "[nodes.n1]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"n1\"\n",
    );
    let out = workshop()
        .env("WORKSHOP_NAME", "n9")
        .env("WORKSHOP_CONFIG", "good.toml")
        .args(["node", "--no-setup"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run workshop node");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no node named \"n9\" in good.toml; its nodes are: n1"),
        "{err}"
    );
    assert!(!dir.path().join("n1").exists());
}

#[test]
fn a_one_node_cluster_file_starts_a_node_clients_reach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cookie = "e2e-cluster-file-cookie";
    let cookie_path = dir.path().join("etc/cookie");
    write(&cookie_path, &format!("{cookie}\n"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    // Paths in the file are relative to the file's directory, not the working directory. The
    // file's listen address is not on this machine: the flag or the environment must win.
    write(
        &dir.path().join("etc/cluster.toml"),
        "cookie_file = \"cookie\"\n[nodes.solo]\nlisten = \"192.0.2.1:4221\"\ndata_dir = \"../data/solo\"\n",
    );
    let data = dir.path().join("data/solo");
    // flag > environment > file, then environment > file.
    let variants: [(&str, &[&str]); 2] = [
        ("192.0.2.1:4222", &["--listen", "127.0.0.1:0"]),
        ("127.0.0.1:0", &[]),
    ];
    for (env_listen, flags) in variants {
        let mut cmd = workshop();
        cmd.env("WORKSHOP_LISTEN", env_listen)
            .args(["node", "--no-setup", "--config", "etc/cluster.toml"])
            .args(flags)
            .current_dir(dir.path());
        let mut node = NodeProcess::spawn(cmd, &data, Some(cookie));
        assert!(node.addr.starts_with("127.0.0.1:"), "{}", node.addr);
        assert!(
            node.stderr().contains("node solo, the board node"),
            "{}",
            node.stderr()
        );
        let out = workshop()
            .args(["status", "--node", &node.addr])
            .env("WORKSHOP_COOKIE", cookie)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run workshop status");
        assert!(
            out.status.success(),
            "status: {}\nstdout: {}\nstderr: {}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("No agents."),
            "{}",
            text(&out.stdout)
        );
        // The cookie came from the cookie file: none was made in the data dir.
        assert!(!data.join("cookie").exists());
        let status = node.terminate();
        let log = node.stderr();
        assert!(status.success(), "the node exited with {status}: {log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}
