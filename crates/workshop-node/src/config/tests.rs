use super::*;

const FILE: &str = r#"# cluster.toml
board = "n1"
cookie_env = "MY_COOKIE"
peers = ["10.0.0.9:4221"]
[tls]
cert = "certs/node.pem"
key = "certs/node.key"
ca = "certs/ca.pem"
[nodes.n1]
listen = "127.0.0.1:4221"
advertise = "10.0.0.1:4221"
data_dir = ".workshop/n1"
mcp_port = 4222
mcp_host = "0.0.0.0"
web_port = 4223
[nodes.n2]
listen = "127.0.0.1:4231"
data_dir = "/var/lib/workshop/n2"
[nodes.n2.tls]
cert = "certs/n2.pem"
key = "/abs/n2.key"
"#;

fn env_with<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<ClusterFile, ConfigError> {
    ClusterFile::parse(text, Path::new("/etc/workshop/cluster.toml"))
}

fn named(name: &str) -> NodeSettings {
    NodeSettings {
        name: Some(name.into()),
        ..Default::default()
    }
}

#[track_caller]
fn err(r: Result<impl std::fmt::Debug, ConfigError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{p:?} is not in: {msg}");
    }
}

#[test]
fn a_good_file_resolves_for_each_node() {
    let file = parse(FILE).expect("parses");
    assert_eq!(file.node_names(), ["n1", "n2"]);
    assert_eq!(file.board(), Some("n1"));
    let env = env_with(&[("MY_COOKIE", " s3cret \n")]);

    let n1 = file.resolve(&named("n1"), &env).expect("n1 resolves");
    let c = &n1.cluster;
    assert_eq!(c.name, "n1");
    assert_eq!(c.listen, "127.0.0.1:4221".parse().expect("addr"));
    assert_eq!(c.advertise.as_deref(), Some("10.0.0.1:4221"));
    assert_eq!(c.board.as_deref(), Some("n1"));
    assert!(c.is_board_node());
    assert_eq!(c.peers, ["127.0.0.1:4231", "10.0.0.9:4221"]);
    assert_eq!(c.cookie, "s3cret");
    assert_eq!((c.mcp_port, c.web_port), (Some(4222), Some(4223)));
    assert_eq!(c.mcp_host, Some("0.0.0.0".parse().expect("ip")));
    assert_eq!(
        c.tls,
        Some(TlsOptions {
            cert: "/etc/workshop/certs/node.pem".into(),
            key: "/etc/workshop/certs/node.key".into(),
            ca: "/etc/workshop/certs/ca.pem".into(),
        })
    );
    assert_eq!(
        n1.data_dir,
        Some(PathBuf::from("/etc/workshop/.workshop/n1"))
    );
    assert_eq!(n1.config, Some(PathBuf::from("/etc/workshop/cluster.toml")));

    let n2 = file.resolve(&named("n2"), &env).expect("n2 resolves");
    let c = &n2.cluster;
    assert_eq!(c.advertise, None);
    assert!(!c.is_board_node());
    assert_eq!(c.peers, ["10.0.0.1:4221", "10.0.0.9:4221"]);
    assert_eq!((c.mcp_port, c.web_port, c.mcp_host), (None, None, None));
    // Its own cert and key over the shared [tls]; an absolute path stays as it is.
    assert_eq!(
        c.tls,
        Some(TlsOptions {
            cert: "/etc/workshop/certs/n2.pem".into(),
            key: "/abs/n2.key".into(),
            ca: "/etc/workshop/certs/ca.pem".into(),
        })
    );
    assert_eq!(n2.data_dir, Some(PathBuf::from("/var/lib/workshop/n2")));
}

#[test]
fn the_example_cluster_toml_parses() {
    let text = include_str!("../../../../cluster.toml");
    let file = ClusterFile::parse(text, Path::new("cluster.toml")).expect("the example parses");
    assert_eq!(file.node_names(), ["n1", "n2", "n3"]);
    assert_eq!(file.board(), Some("n1"));
    let env = env_with(&[("WORKSHOP_COOKIE", "c")]);
    let n3 = file.resolve(&named("n3"), &env).expect("n3 resolves");
    assert_eq!(n3.cluster.listen, "127.0.0.1:4241".parse().expect("addr"));
    assert_eq!(n3.cluster.peers, ["127.0.0.1:4221", "127.0.0.1:4231"]);
    assert_eq!(n3.cluster.board.as_deref(), Some("n1"));
    assert_eq!(n3.data_dir, Some(PathBuf::from(".workshop/n3")));
    assert_eq!(n3.cluster.tls, None);
}

#[test]
fn one_node_is_its_own_board_and_needs_no_name() {
    let file = parse("[nodes.solo]\nlisten = \"127.0.0.1:0\"\n").expect("parses");
    let env = env_with(&[("WORKSHOP_COOKIE", "c")]);
    let r = file
        .resolve(&NodeSettings::default(), &env)
        .expect("resolves");
    assert_eq!(r.cluster.name, "solo");
    assert_eq!(r.cluster.board.as_deref(), Some("solo"));
    assert!(r.cluster.peers.is_empty());
    assert_eq!(r.data_dir, Some(PathBuf::from(DEFAULT_DATA_DIR)));
}

#[test]
fn an_unknown_top_level_key_is_named_with_its_line() {
    let text = "board = \"n1\"\ncookie_fle = \"x\"\n[nodes.n1]\nlisten = \"127.0.0.1:1\"\n";
    let e = err(parse(text));
    has(
        &e,
        &[
            "/etc/workshop/cluster.toml:2:1: unknown key \"cookie_fle\" in the top level",
            "expected one of: board, cookie_file, cookie_env, peers, tls, nodes",
        ],
    );
}

#[test]
fn an_unknown_key_in_a_node_section_is_named_with_its_line_and_table() {
    let text = "board = \"n1\"\n\n[nodes.n1]\nlisten = \"127.0.0.1:4221\"\n\n[nodes.n2]\nlisen = \"127.0.0.1:4231\"\n";
    let e = err(parse(text));
    assert_eq!(
        e,
        "/etc/workshop/cluster.toml:7:1: unknown key \"lisen\" in [nodes.n2] (expected one of: listen, advertise, data_dir, mcp_port, mcp_host, web_port, tls)"
    );
}

#[test]
fn an_unknown_table_and_a_dotted_key_are_named_too() {
    let e = err(parse(
        "[tsl]\nca = \"x\"\n[nodes.n1]\nlisten = \"127.0.0.1:1\"\n",
    ));
    has(
        &e,
        &["cluster.toml:1:", "unknown key \"tsl\" in the top level"],
    );
    let e = err(parse(
        "[nodes.n1]\nlisten = \"127.0.0.1:1\"\n[nodes.n1.tls]\ncrt = \"x\"\n",
    ));
    has(
        &e,
        &[
            "cluster.toml:4:1: unknown key \"crt\" in [nodes.n1.tls]",
            "expected one of: cert, key, ca",
        ],
    );
    let e = err(parse(
        "nodes.n1.listen = \"127.0.0.1:1\"\nnodes.n1.port = 3\n",
    ));
    has(
        &e,
        &["cluster.toml:2:", "unknown key \"port\" in [nodes.n1]"],
    );
}

#[test]
fn a_missing_listen_a_bad_value_and_bad_syntax_name_their_line() {
    let e = err(parse("[nodes.n1]\ndata_dir = \"d\"\n"));
    has(
        &e,
        &["cluster.toml:1:", "missing key \"listen\" in [nodes.n1]"],
    );
    let e = err(parse(
        "[nodes.n1]\nlisten = \"127.0.0.1:1\"\nmcp_port = \"x\"\n",
    ));
    has(&e, &["cluster.toml:3:", "nodes.n1.mcp_port"]);
    let e = err(parse(
        "[nodes.n1]\nlisten = \"127.0.0.1:1\"\nweb_port = 70000\n",
    ));
    has(&e, &["cluster.toml:3:", "nodes.n1.web_port"]);
    let e = err(parse("board = \n[nodes.n1]\n"));
    has(&e, &["cluster.toml:1:"]);
    let e = err(parse(""));
    has(&e, &["no nodes", "[nodes.NAME]"]);
}

#[test]
fn two_nodes_need_a_board() {
    let text = "[nodes.n1]\nlisten = \"127.0.0.1:4221\"\n[nodes.n2]\nlisten = \"127.0.0.1:4231\"\n";
    let e = err(parse(text));
    has(
        &e,
        &[
            "/etc/workshop/cluster.toml",
            "no board",
            "board = \"NAME\"",
            "n1, n2",
        ],
    );
}

#[test]
fn the_board_must_be_a_node_of_the_file() {
    let text = "cookie_env = \"C\"\nboard = \"n9\"\n[nodes.n1]\nlisten = \"127.0.0.1:4221\"\n";
    let e = err(parse(text));
    has(
        &e,
        &[
            "cluster.toml:2:9: board = \"n9\" is not a node of this file",
            "n1",
        ],
    );
    let file = parse("[nodes.n1]\nlisten = \"127.0.0.1:4221\"\n").expect("parses");
    let s = NodeSettings {
        board: Some("n9".into()),
        ..named("n1")
    };
    let e = err(file.resolve(&s, &env_with(&[("WORKSHOP_COOKIE", "c")])));
    has(&e, &["--board \"n9\"", "its nodes are: n1"]);
}

#[test]
fn a_bad_address_names_its_key_and_line() {
    let e = err(parse("[nodes.n1]\nlisten = \"localhost\"\n"));
    has(
        &e,
        &["cluster.toml:2:10: nodes.n1.listen = \"localhost\" is not an IP:PORT address"],
    );
    let e = err(parse(
        "[nodes.n1]\nlisten = \"127.0.0.1:1\"\nadvertise = \"n1.internal\"\n",
    ));
    has(
        &e,
        &[
            "cluster.toml:3:",
            "nodes.n1.advertise = \"n1.internal\": no port",
        ],
    );
    let e = err(parse(
        "peers = [\"ok:1\",\n  \"bad host:1\"]\n[nodes.n1]\nlisten = \"127.0.0.1:1\"\n",
    ));
    has(
        &e,
        &[
            "cluster.toml:2:3: peers entry \"bad host:1\"",
            "not a host name",
        ],
    );
    let e = err(parse(
        "[nodes.n1]\nlisten = \"127.0.0.1:1\"\nadvertise = \"0.0.0.0:4221\"\n",
    ));
    has(&e, &["nodes.n1.advertise", "cannot be connected to"]);
    // Host names and bracketed IPv6 are fine to advertise.
    parse("peers = [\"[fd00::5]:4221\"]\n[nodes.n1]\nlisten = \"[::]:4221\"\nadvertise = \"n1.internal:4221\"\n")
        .expect("parses");
}

#[test]
fn a_node_listening_everywhere_in_a_cluster_must_advertise() {
    let text = "board = \"n1\"\n[nodes.n1]\nlisten = \"0.0.0.0:4221\"\n[nodes.n2]\nlisten = \"0.0.0.0:4221\"\nadvertise = \"n2:4221\"\n";
    let e = err(parse(text));
    has(
        &e,
        &[
            "cluster.toml:2:",
            "[nodes.n1] listens on 0.0.0.0:4221 but has no advertise",
        ],
    );
}

#[test]
fn an_unknown_name_lists_the_nodes() {
    let file = parse(FILE).expect("parses");
    let e = err(file.resolve(&named("n3"), &no_env));
    has(
        &e,
        &[
            "no node named \"n3\"",
            "/etc/workshop/cluster.toml",
            "n1, n2",
        ],
    );
    let e = err(file.resolve(&NodeSettings::default(), &no_env));
    has(&e, &["--name", "n1, n2"]);
}

#[test]
fn cookie_file_and_cookie_env_exclude_each_other() {
    let text = "cookie_file = \"c\"\ncookie_env = \"C\"\n[nodes.n1]\nlisten = \"127.0.0.1:1\"\n";
    let e = err(parse(text));
    has(
        &e,
        &[
            "both cookie_file (line 1) and cookie_env (line 2)",
            "keep one",
        ],
    );
}

#[test]
fn a_cookie_env_that_is_not_set_is_an_error() {
    let file = parse(FILE).expect("parses");
    let e = err(file.resolve(&named("n1"), &no_env));
    has(&e, &["cluster.toml:3:", "MY_COOKIE is not set"]);
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_cookie_file_others_can_read_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cookie = dir.path().join("cookie");
    write_mode(&cookie, "abc\n", 0o644);
    let toml_path = dir.path().join("cluster.toml");
    let text = "cookie_file = \"cookie\"\n[nodes.n1]\nlisten = \"127.0.0.1:1\"\n";
    let file = ClusterFile::parse(text, &toml_path).expect("parses");
    let e = err(file.resolve(&named("n1"), &no_env));
    has(
        &e,
        &[
            "mode 644",
            &format!("chmod 600 {}", cookie.display()),
            "cluster.toml:1:",
        ],
    );
    write_mode(&cookie, "  abc\n", 0o600);
    let r = file.resolve(&named("n1"), &no_env).expect("resolves");
    assert_eq!(r.cluster.cookie, "abc");
    write_mode(&cookie, " \n", 0o600);
    has(&err(file.resolve(&named("n1"), &no_env)), &["is empty"]);
    std::fs::remove_file(&cookie).expect("rm");
    has(
        &err(file.resolve(&named("n1"), &no_env)),
        &["no cookie file at", "chmod 600"],
    );
}

#[test]
fn a_cluster_without_a_shared_cookie_is_refused_but_a_single_node_makes_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "board = \"n1\"\n[nodes.n1]\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d1\"\n[nodes.n2]\nlisten = \"127.0.0.1:2\"\n";
    let file = ClusterFile::parse(text, &dir.path().join("c.toml")).expect("parses");
    has(
        &err(file.resolve(&named("n1"), &no_env)),
        &["no cookie for a cluster of 2 nodes", "cookie_file"],
    );
    let single = ClusterFile::parse(
        "[nodes.n1]\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d1\"\n",
        &dir.path().join("c.toml"),
    )
    .expect("parses");
    let r = single.resolve(&named("n1"), &no_env).expect("resolves");
    let made = std::fs::read_to_string(dir.path().join("d1/cookie")).expect("cookie made");
    assert_eq!(r.cluster.cookie, made.trim());
    // Once there, a cluster node uses it too (copied in by the operator).
    let r = file.resolve(&named("n1"), &no_env).expect("resolves");
    assert_eq!(r.cluster.cookie, made.trim());
}

#[test]
fn half_a_tls_setting_is_refused() {
    let text = "[tls]\nca = \"ca.pem\"\n[nodes.n1]\nlisten = \"127.0.0.1:1\"\n";
    let file = parse(text).expect("parses");
    let e = err(file.resolve(&named("n1"), &env_with(&[("WORKSHOP_COOKIE", "c")])));
    has(
        &e,
        &[
            "TLS for node n1 is only half set: no cert, no key",
            "--tls-cert",
        ],
    );
}

#[test]
fn flags_and_environment_win_over_the_file_and_the_file_over_defaults() {
    let file = parse(FILE).expect("parses");
    let dir = tempfile::tempdir().expect("tempdir");
    let cookie = dir.path().join("cookie");
    write_mode(&cookie, "from-file", 0o600);
    let s = NodeSettings {
        name: Some("n2".into()),
        listen: Some("0.0.0.0:5000".parse().expect("addr")),
        advertise: Some("n2.example:5000".into()),
        board: Some("n2".into()),
        peers: vec!["10.1.1.1:1".into(), "10.1.1.1:1".into()],
        cookie_file: Some(cookie.clone()),
        tls_ca: Some("/flag/ca.pem".into()),
        mcp_port: Some(1),
        web_port: Some(2),
        mcp_host: Some("127.0.0.9".parse().expect("ip")),
        data_dir: Some("/flag/data".into()),
        ..Default::default()
    };
    let r = file
        .resolve(&s, &env_with(&[("MY_COOKIE", "from-env")]))
        .expect("resolves");
    let c = &r.cluster;
    assert_eq!(c.listen, "0.0.0.0:5000".parse().expect("addr"));
    assert_eq!(c.advertise.as_deref(), Some("n2.example:5000"));
    assert_eq!(c.board.as_deref(), Some("n2"));
    // The file's nodes stay peers; --peer replaces the file's extra peers.
    assert_eq!(c.peers, ["10.0.0.1:4221", "10.1.1.1:1"]);
    assert_eq!(c.cookie, "from-file");
    assert_eq!(
        c.tls.as_ref().map(|t| t.ca.clone()),
        Some(PathBuf::from("/flag/ca.pem"))
    );
    assert_eq!((c.mcp_port, c.web_port), (Some(1), Some(2)));
    assert_eq!(c.mcp_host, Some("127.0.0.9".parse().expect("ip")));
    assert_eq!(r.data_dir, Some(PathBuf::from("/flag/data")));
    // --ephemeral: no data dir whatever the file says.
    let s = NodeSettings {
        ephemeral: true,
        ..named("n1")
    };
    let r = file
        .resolve(&s, &env_with(&[("MY_COOKIE", "x")]))
        .expect("resolves");
    assert_eq!(r.data_dir, None);
}

#[test]
fn without_a_file_a_node_is_a_cluster_of_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = NodeSettings {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let env = env_with(&[(NODE_NAME_ENV, "box"), (COOKIE_ENV, "c")]);
    let r = resolve_with(&s, &env).expect("resolves");
    assert_eq!(
        r.cluster,
        ClusterOptions::single("box", DEFAULT_LISTEN, "c")
    );
    assert!(r.cluster.is_board_node());
    assert_eq!(r.data_dir.as_deref(), Some(dir.path()));
    assert_eq!(r.config, None);
    // --name wins over WORKSHOP_NODE_NAME; flags still apply.
    let s = NodeSettings {
        name: Some("n7".into()),
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        peers: vec!["127.0.0.1:4221".into()],
        board: Some("n1".into()),
        ..s
    };
    let r = resolve_with(&s, &env).expect("resolves");
    assert_eq!(r.cluster.name, "n7");
    assert_eq!(r.cluster.peers, ["127.0.0.1:4221"]);
    assert!(!r.cluster.is_board_node());
    // No cookie anywhere on an ephemeral node: NoCookie (it may run unreachable).
    let s = NodeSettings {
        ephemeral: true,
        ..Default::default()
    };
    assert!(matches!(
        resolve_with(&s, &no_env),
        Err(ConfigError::NoCookie(_))
    ));
    let s = NodeSettings {
        peers: vec!["nope".into()],
        ..s
    };
    has(
        &err(resolve_with(&s, &env)),
        &["--peer \"nope\"", "no port"],
    );
}

#[test]
fn a_missing_file_is_named() {
    let s = NodeSettings {
        config: Some("/nonexistent/cluster.toml".into()),
        ..Default::default()
    };
    has(
        &err(resolve_with(&s, &no_env)),
        &[
            "cannot read the cluster file /nonexistent/cluster.toml (no such file)",
            "--config",
        ],
    );
}

#[test]
fn the_compose_cluster_file_parses_and_resolves_for_each_node() {
    let text = include_str!("../../../../deploy/cluster.compose.toml");
    let file = ClusterFile::parse(text, Path::new("/etc/workshop/cluster.toml"))
        .expect("the compose cluster file parses");
    assert_eq!(file.node_names(), ["n1", "n2", "n3"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cookie = dir.path().join("cookie");
    write_mode(&cookie, "c", 0o600);
    for name in ["n1", "n2", "n3"] {
        // The container's secret is not here: the flag points at a stand-in.
        let s = NodeSettings {
            cookie_file: Some(cookie.clone()),
            ..named(name)
        };
        let r = file.resolve(&s, &no_env).expect("resolves");
        assert_eq!(r.cluster.listen, "0.0.0.0:4221".parse().expect("addr"));
        assert_eq!(r.cluster.advertise, Some(format!("{name}:4221")));
        assert_eq!(r.cluster.peers.len(), 2);
        assert!(!r.cluster.peers.contains(&format!("{name}:4221")));
        assert_eq!(r.cluster.board.as_deref(), Some("n1"));
    }
    // Without the flag, the cookie is the compose secret's path.
    let e = err(file.resolve(&named("n1"), &no_env));
    has(&e, &["/run/secrets/workshop_cookie"]);
}
