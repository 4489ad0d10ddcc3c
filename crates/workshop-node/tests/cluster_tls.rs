//! Mutual TLS between NodeServers (`workshop_node::cluster::tls`): a CA and node certificates
//! made with rcgen in a temp dir; two NodeServers whose session becomes ready over TLS; a plain
//! TCP client, a client without a certificate and one with a certificate from another CA never
//! get a ready session; bad files are named.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use workshop_node::cluster::{self, tls, TlsOptions};

const COOKIE: &str = "tls-test-cookie";
/// How long a session may take to become ready (or a refused one to show it never does).
const WAIT: Duration = Duration::from_secs(10);
/// How long a refused client may take to see its session closed (never ready).
const REFUSED_WAIT: Duration = Duration::from_secs(10);

/// A CA and what it signed, written as PEM files.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA cert");
        Self { cert, key }
    }

    /// A node certificate for `sans` (for server and client authentication), its key and this
    /// CA, as files in `dir` named after `node`.
    fn node(
        &self,
        dir: &Path,
        node: &str,
        sans: &[&str],
        eku: &[ExtendedKeyUsagePurpose],
    ) -> TlsOptions {
        let key = KeyPair::generate().expect("node key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("node params");
        params.distinguished_name.push(DnType::CommonName, node);
        params.extended_key_usages = eku.to_vec();
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("node cert");
        let tls = TlsOptions {
            cert: dir.join(format!("{node}.pem")),
            key: dir.join(format!("{node}.key")),
            ca: dir.join(format!("{node}-ca.pem")),
        };
        std::fs::write(&tls.cert, cert.pem()).expect("write cert");
        std::fs::write(&tls.key, key.serialize_pem()).expect("write key");
        std::fs::write(&tls.ca, self.cert.pem()).expect("write ca");
        tls
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(&std::fs::read(path).expect("read cert"))
        .collect::<Result<Vec<_>, _>>()
        .expect("certs")
}

const BOTH: &[ExtendedKeyUsagePurpose] = &[
    ExtendedKeyUsagePurpose::ServerAuth,
    ExtendedKeyUsagePurpose::ClientAuth,
];

#[derive(Debug)]
enum Ev {
    Ready,
    Closed,
}

struct Watch(mpsc::UnboundedSender<Ev>);

impl NodeEventSubscription for Watch {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, _: NodeServerSessionInformation) {}
    fn node_session_ready(&self, _: NodeServerSessionInformation) {
        let _ = self.0.send(Ev::Ready);
    }
    fn node_session_disconnected(&self, _: NodeServerSessionInformation) {
        let _ = self.0.send(Ev::Closed);
    }
}

/// A NodeServer on a free loopback port (TLS when `mode` is given), and its session events.
async fn server(
    name: &str,
    mode: Option<ractor_cluster::IncomingEncryptionMode>,
) -> (
    ActorRef<NodeServerMessage>,
    u16,
    mpsc::UnboundedReceiver<Ev>,
) {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = cluster::free_port(ip).expect("free port");
    let ns = NodeServer::new(
        port,
        COOKIE.into(),
        name.into(),
        "127.0.0.1".into(),
        mode,
        None,
    )
    .with_listen_addr(ip);
    let (server, _) = Actor::spawn(None, ns, ()).await.expect("node server");
    let (tx, rx) = mpsc::unbounded_channel();
    server
        .cast(NodeServerMessage::SubscribeToEvents {
            id: "test".into(),
            subscription: Box::new(Watch(tx)),
        })
        .expect("subscribe");
    (server, port, rx)
}

/// The first ready or closed event within `limit` (None: neither came).
async fn next(rx: &mut mpsc::UnboundedReceiver<Ev>, limit: Duration) -> Option<Ev> {
    tokio::time::timeout(limit, rx.recv()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_certificates_from_the_ca_get_a_ready_tls_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("workshop test CA");
    let a = ca.node(dir.path(), "a", &["127.0.0.1", "localhost"], BOTH);
    let b = ca.node(dir.path(), "b", &["127.0.0.1"], BOTH);
    let (sa, port, mut a_events) =
        server("a", Some(tls::server_mode(&a).expect("server mode"))).await;
    let (sb, _, mut b_events) = server("b", Some(tls::server_mode(&b).expect("server mode"))).await;

    tls::connect(&sb, &format!("127.0.0.1:{port}"), &b)
        .await
        .expect("TLS connect");
    assert!(
        matches!(next(&mut b_events, WAIT).await, Some(Ev::Ready)),
        "the client side never became ready"
    );
    assert!(
        matches!(next(&mut a_events, WAIT).await, Some(Ev::Ready)),
        "the server side never became ready"
    );
    // A host name the certificate has works as well as the IP address.
    let (sc, _, mut c_events) = server("c", None).await;
    tls::connect(&sc, &format!("localhost:{port}"), &b)
        .await
        .expect("TLS connect by name");
    assert!(matches!(next(&mut c_events, WAIT).await, Some(Ev::Ready)));
    for s in [sa, sb, sc] {
        s.stop(None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_tls_or_the_cas_certificate_never_become_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("workshop test CA");
    let a = ca.node(dir.path(), "a", &["127.0.0.1"], BOTH);
    let (sa, port, _a_events) = server("a", Some(tls::server_mode(&a).expect("server mode"))).await;
    let addr = format!("127.0.0.1:{port}");

    // Plain TCP: the TCP connection opens; the session closes without becoming ready.
    let (plain, _, mut plain_events) = server("plain", None).await;
    ractor_cluster::client_connect(&plain, addr.as_str())
        .await
        .expect("TCP connects");
    let ev = next(&mut plain_events, REFUSED_WAIT).await;
    assert!(
        matches!(ev, Some(Ev::Closed)),
        "a plain client was not refused: {ev:?}"
    );

    // TLS without a client certificate.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in certs(&a.ca) {
            r.add(c).expect("root");
        }
        Arc::new(r)
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let anonymous = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let (anon, _, mut anon_events) = server("anon", None).await;
    let _ = ractor_cluster::client_connect_enc(
        &anon,
        addr.as_str(),
        tokio_rustls::TlsConnector::from(Arc::new(anonymous)),
        tls::server_name(&addr).expect("name"),
    )
    .await;
    let ev = next(&mut anon_events, REFUSED_WAIT).await;
    assert!(
        matches!(ev, Some(Ev::Closed)),
        "a client without a certificate was not refused: {ev:?}"
    );

    // TLS with a certificate another CA signed (it trusts the server's CA itself).
    let other = Ca::new("another CA").node(dir.path(), "x", &["127.0.0.1"], BOTH);
    let foreign = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            certs(&other.cert),
            PrivateKeyDer::from_pem_slice(&std::fs::read(&other.key).expect("read key"))
                .expect("key"),
        )
        .expect("client config");
    let (x, _, mut x_events) = server("x", None).await;
    let _ = ractor_cluster::client_connect_enc(
        &x,
        addr.as_str(),
        tokio_rustls::TlsConnector::from(Arc::new(foreign)),
        tls::server_name(&addr).expect("name"),
    )
    .await;
    let ev = next(&mut x_events, REFUSED_WAIT).await;
    assert!(
        matches!(ev, Some(Ev::Closed)),
        "a client of another CA was not refused: {ev:?}"
    );

    // The server still serves its own cluster's nodes after all that.
    let b = ca.node(dir.path(), "b", &["127.0.0.1"], BOTH);
    let (sb, _, mut b_events) = server("b", None).await;
    tls::connect(&sb, &addr, &b).await.expect("TLS connect");
    assert!(matches!(next(&mut b_events, WAIT).await, Some(Ev::Ready)));
    for s in [sa, plain, anon, x, sb] {
        s.stop(None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_certificate_does_not_name_the_address_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("workshop test CA");
    let a = ca.node(dir.path(), "a", &["n1.internal"], BOTH);
    let b = ca.node(dir.path(), "b", &["127.0.0.1"], BOTH);
    let (sa, port, _) = server("a", Some(tls::server_mode(&a).expect("server mode"))).await;
    let (sb, _, _) = server("b", None).await;
    let e = tls::connect(&sb, &format!("127.0.0.1:{port}"), &b)
        .await
        .expect_err("the server's certificate is for n1.internal only");
    assert!(e.to_string().contains("not valid for the address"), "{e}");
    // Talking TLS to a plain server fails too, and says so.
    let (plain, plain_port, _) = server("plain", None).await;
    let e = tls::connect(&sb, &format!("127.0.0.1:{plain_port}"), &b)
        .await
        .expect_err("a plain server");
    assert!(e.to_string().contains("TLS"), "{e}");
    for s in [sa, sb, plain] {
        s.stop(None);
    }
}

#[test]
fn bad_files_are_named_with_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("workshop test CA");
    let good = ca.node(dir.path(), "a", &["127.0.0.1"], BOTH);
    let msg = |tls: &TlsOptions| match tls::server_mode(tls) {
        Ok(_) => panic!("{tls:?} was accepted"),
        Err(e) => e.to_string(),
    };

    let missing = TlsOptions {
        cert: dir.path().join("nope.pem"),
        ..good.clone()
    };
    let m = msg(&missing);
    assert!(m.contains("nope.pem") && m.contains("no such file"), "{m}");

    let not_a_key = TlsOptions {
        key: good.cert.clone(),
        ..good.clone()
    };
    let m = msg(&not_a_key);
    assert!(m.contains("a.pem") && m.contains("no private key"), "{m}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello\n").expect("write");
    let m = msg(&TlsOptions {
        ca: garbage.clone(),
        ..good.clone()
    });
    assert!(
        m.contains("garbage.pem") && m.contains("no certificate"),
        "{m}"
    );

    let other = Ca::new("another CA").node(dir.path(), "x", &["127.0.0.1"], BOTH);
    let m = msg(&TlsOptions {
        cert: other.cert.clone(),
        key: other.key.clone(),
        ca: good.ca.clone(),
    });
    assert!(
        m.contains("x.pem") && m.contains("is not signed by the CA in") && m.contains("a-ca.pem"),
        "{m}"
    );

    let wrong_key = TlsOptions {
        key: other.key.clone(),
        ..good.clone()
    };
    let m = msg(&wrong_key);
    assert!(m.contains("does not belong to the certificate"), "{m}");

    let server_only = ca.node(
        dir.path(),
        "s",
        &["127.0.0.1"],
        &[ExtendedKeyUsagePurpose::ServerAuth],
    );
    let m = msg(&server_only);
    assert!(m.contains("serverAuth, clientAuth"), "{m}");

    assert!(tls::server_mode(&good).is_ok());
    assert!(tls::connector(&good).is_ok());
}

#[test]
fn the_server_name_is_the_host_of_the_address() {
    use rustls::pki_types::ServerName;
    let ip = |s: &str| match tls::server_name(s).expect(s) {
        ServerName::IpAddress(a) => IpAddr::from(a).to_string(),
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(ip("127.0.0.1:4221"), "127.0.0.1");
    assert_eq!(ip("[::1]:4221"), "::1");
    match tls::server_name("n2.internal:4221").expect("dns") {
        ServerName::DnsName(d) => assert_eq!(d.as_ref(), "n2.internal"),
        other => panic!("{other:?}"),
    }
    assert!(tls::server_name("bad host:1").is_err());
}

/// Documents a limitation of ractor_cluster 0.16.5 (see the `tls` module doc): the listener
/// runs each TLS handshake inline in its accept loop, without a timeout, so a connection that
/// never sends a ClientHello holds up later ones until it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_holds_up_the_tls_listener_until_it_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("workshop test CA");
    let a = ca.node(dir.path(), "a", &["127.0.0.1"], BOTH);
    let b = ca.node(dir.path(), "b", &["127.0.0.1"], BOTH);
    let (sa, port, _) = server("a", Some(tls::server_mode(&a).expect("server mode"))).await;
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("silent connection");
    let (sb, _, mut b_events) = server("b", None).await;
    // Our side of the handshake waits for the server, which is stuck on the silent one.
    let addr = format!("127.0.0.1:{port}");
    let connecting = tokio::spawn({
        let sb = sb.clone();
        async move { tls::connect(&sb, &addr, &b).await }
    });
    let ev = next(&mut b_events, Duration::from_secs(2)).await;
    assert!(ev.is_none(), "the listener was not held up: {ev:?}");
    drop(silent);
    tokio::time::timeout(WAIT, connecting)
        .await
        .expect("the handshake goes on once the silent connection closes")
        .expect("task")
        .expect("TLS connect");
    assert!(matches!(next(&mut b_events, WAIT).await, Some(Ev::Ready)));
    for s in [sa, sb] {
        s.stop(None);
    }
}
