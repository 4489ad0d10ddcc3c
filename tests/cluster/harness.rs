//! The harness itself: hosts reach each other and the test process through the bridge, a cut
//! host is unreachable (and an established connection resumes after the heal), a node runs in
//! a namespace and restarts on the same address, and nothing is left behind.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::net::{enabled, in_ns, leftovers, namespaces, within, Net};

/// A plain listener inside `ns` on `addr`.
fn listen_in(ns: &str, addr: SocketAddr) -> TcpListener {
    in_ns(ns, move || {
        TcpListener::bind(addr).expect("bind in the namespace")
    })
}

/// A connection attempt from inside `ns` (bounded by `wait`).
fn connect_from(ns: &str, to: SocketAddr, wait: Duration) -> std::io::Result<TcpStream> {
    in_ns(ns, move || TcpStream::connect_timeout(&to, wait))
}

/// Read exactly `n` bytes within `wait`, or the error that stopped it.
fn read_n(s: &mut TcpStream, n: usize, wait: Duration) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(wait))?;
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

#[test]
fn hosts_reach_each_other_cut_and_heal_and_nothing_is_left() {
    if !enabled("hosts_reach_each_other_cut_and_heal_and_nothing_is_left") {
        return;
    }
    let mut net = Net::new(3);
    let run = net.run.clone();
    let (h1, h2) = (net.hosts[0].ns.clone(), net.hosts[1].ns.clone());
    let ns = namespaces();
    for h in &net.hosts {
        assert!(ns.contains(&h.ns), "{} missing: {ns:?}", h.ns);
    }
    let at = SocketAddr::new(net.hosts[1].ip.into(), 7000);
    let listener = listen_in(&h2, at);

    // The root namespace (through the bridge's address) and h1 both reach h2.
    let short = Duration::from_secs(2);
    TcpStream::connect_timeout(&at, short).expect("root -> h2");
    let _ = listener.accept().expect("accept root");
    let mut from_h1 = connect_from(&h1, at, short).expect("h1 -> h2");
    let (mut on_h2, peer) = listener.accept().expect("accept h1");
    assert_eq!(peer.ip(), std::net::IpAddr::from(net.hosts[0].ip));

    // Cut h2: no new connection, and bytes sent on the open one do not arrive...
    net.host(2).cut();
    let refused = connect_from(&h1, at, Duration::from_secs(1));
    assert!(refused.is_err(), "h1 reached a cut h2");
    assert!(
        TcpStream::connect_timeout(&at, Duration::from_secs(1)).is_err(),
        "root reached a cut h2"
    );
    from_h1.write_all(b"ping").expect("write");
    let stalled = read_n(&mut on_h2, 4, Duration::from_millis(700));
    assert!(
        matches!(&stalled, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "{stalled:?}"
    );
    // ...and after the heal they do (TCP retransmits), and new connections work again.
    net.host(2).heal();
    assert_eq!(
        read_n(&mut on_h2, 4, Duration::from_secs(20)).expect("after heal"),
        b"ping"
    );
    connect_from(&h1, at, short).expect("h1 -> h2 after heal");

    drop((from_h1, on_h2, listener));
    drop(net);
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_in_a_namespace_and_restarts_on_its_address() {
    if !enabled("a_node_runs_in_a_namespace_and_restarts_on_its_address") {
        return;
    }
    let mut net = Net::new(2);
    let run = net.run.clone();
    let dir = net.host(1).data_dir().to_path_buf();
    let pid = net.host(1).spawn_node(&[]).pid;
    // The process lives in the host's namespace.
    let ns = net.hosts[0].ns.clone();
    let pids = crate::net::ip(&["netns", "pids", &ns]).expect("pids");
    assert!(pids.lines().any(|p| p.trim() == pid.to_string()), "{pids}");

    let c = net.host(1).node().client().await;
    within("node info", c.node_info()).await.expect("node info");
    c.work("x", "survives restarts", Default::default())
        .await
        .expect("post");
    drop(c);

    // kill -9, then again on the same address and data dir.
    let (status, _) = net.host(1).kill9();
    assert!(!status.success());
    net.host(1).spawn_node(&[]);
    let c = net.host(1).node().client().await;
    assert!(c.work_item("x").await.expect("get").is_some(), "item lost");
    drop(c);
    // SIGTERM: a clean exit, then again.
    let (status, log) = net.host(1).terminate();
    assert!(status.success(), "{status}: {log}");
    net.host(1).spawn_node(&[]);
    let c = net.host(1).node().client().await;
    assert!(c.work_item("x").await.expect("get").is_some(), "item lost");
    drop(c);

    // A node still running when the net goes is stopped by it, and its data dir removed.
    drop(net);
    assert_eq!(leftovers(&run), Vec::<String>::new());
    assert!(!dir.exists(), "{} left", dir.display());
}
