//! Mutual TLS on the cluster port, with the TLS stack ractor_cluster itself uses (tokio-rustls
//! 0.26, rustls 0.23 on aws-lc-rs).
//!
//! Every node has a certificate and key signed by the cluster's CA ([`TlsOptions`]). A node's
//! NodeServer listens with [`server_mode`]: it accepts only clients whose certificate the CA
//! signed. [`connect`] opens a session to another node: it presents this node's certificate and
//! accepts the peer only if the CA signed its certificate and the certificate is valid for the
//! host it dialled (the host part of `addr`: a DNS name or an IP address). So every node
//! certificate needs both `serverAuth` and `clientAuth` in its extended key usage and the
//! addresses other nodes dial it at in its subjectAltName. The cookie challenge still runs
//! inside the TLS session.
//!
//! What ractor_cluster 0.16.5 does with it (read in its source: `net/listener.rs`,
//! `node/client.rs`; the tests in `tests/cluster_tls.rs` run it):
//! - `NodeServer::new(.., Some(IncomingEncryptionMode::Tls(acceptor)), ..)` serves TLS:
//!   sessions are only opened after a completed handshake, and a plain-TCP client never gets a
//!   session (its first bytes are not a TLS record; the server drops it and the client sees its
//!   session close before `ready`).
//! - `client_connect_enc` returns once this side of the handshake is done. With TLS 1.3 the
//!   server checks the client's certificate after that, so a refused client certificate shows
//!   up as the session closing before `ready`, not as an error here: callers wait for
//!   `node_session_ready` (as `cluster::connect` does) before they count on a peer.
//! - **Limitation**: the listener performs each TLS handshake inline in its accept loop, with
//!   no timeout. A TCP connection that never sends a ClientHello (a port scanner, a stuck peer)
//!   holds up every later connection until it closes. Keep the cluster port on a private
//!   network (as without TLS); a fix belongs upstream (a handshake timeout, or handshakes in
//!   their own tasks) or here through `client_connect_external`/`ConnectionOpenedExternal`
//!   with our own listener.
//! - The handshake failure on the server side is only logged by ractor_cluster (`warn`, target
//!   `ractor_cluster`), not reported as a session event.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ractor::ActorRef;
use ractor_cluster::{ClientConnectErr, IncomingEncryptionMode, NodeServerMessage};
use tokio_rustls::rustls::{
    self,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::WebPkiClientVerifier,
    CertificateError, ClientConfig, RootCertStore, ServerConfig,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::TlsOptions;
use crate::ApiError;

/// The server side: what `NodeServer::new` takes to serve TLS that requires a client
/// certificate signed by `tls.ca`.
pub fn server_mode(tls: &TlsOptions) -> Result<IncomingEncryptionMode, ApiError> {
    Ok(IncomingEncryptionMode::Tls(acceptor(tls)?))
}

/// The acceptor [`server_mode`] wraps.
pub fn acceptor(tls: &TlsOptions) -> Result<TlsAcceptor, ApiError> {
    let m = Material::load(tls)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(m.roots.clone(), m.provider.clone())
        .build()
        .map_err(|e| node(format!("cannot use the CA in {}: {e}", tls.ca.display())))?;
    let config = ServerConfig::builder_with_provider(m.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| node(format!("TLS setup failed: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.certs, m.key)
        .map_err(|e| key_error(&e, tls))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client side: presents `tls.cert` and accepts servers whose certificate `tls.ca` signed.
pub fn connector(tls: &TlsOptions) -> Result<TlsConnector, ApiError> {
    let m = Material::load(tls)?;
    let config = ClientConfig::builder_with_provider(m.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| node(format!("TLS setup failed: {e}")))?
        .with_root_certificates(m.roots.clone())
        .with_client_auth_cert(m.certs, m.key)
        .map_err(|e| key_error(&e, tls))?;
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name a server's certificate must be valid for when dialled at `addr` (`host:port`):
/// its host, a DNS name or an IP address (`[v6]:port` too).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, ApiError> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(ServerName::IpAddress(sa.ip().into()));
    }
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(addr)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| {
        node(format!(
            "cannot connect to {addr:?} with TLS: {host:?} is neither a host name nor an IP address"
        ))
    })
}

/// Open a TLS session from `server` (this node's NodeServer) to the node at `addr`. Returns once
/// this side of the handshake is done; the peer may still refuse this node's certificate or
/// cookie, which closes the session before its `node_session_ready` event (see the module doc).
pub async fn connect(
    server: &ActorRef<NodeServerMessage>,
    addr: &str,
    tls: &TlsOptions,
) -> Result<(), ApiError> {
    let connector = connector(tls)?;
    let name = server_name(addr)?;
    ractor_cluster::client_connect_enc(server, addr, connector, name)
        .await
        .map_err(|e| connect_error(e, addr, tls))
}

fn node(msg: String) -> ApiError {
    ApiError::Node(msg)
}

/// A node's certificate chain, key and trusted CA, read and checked.
struct Material {
    provider: Arc<CryptoProvider>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl Material {
    fn load(tls: &TlsOptions) -> Result<Self, ApiError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = read_certs(&tls.cert, "cert")?;
        let key = read_key(&tls.key)?;
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&tls.ca, "ca")? {
            roots.add(ca).map_err(|e| {
                node(format!(
                    "the CA certificate in {} cannot be used: {e}; ca must be the cluster CA's certificate (PEM)",
                    tls.ca.display()
                ))
            })?;
        }
        let roots = Arc::new(roots);
        check_signed(&certs, &roots, &provider, tls)?;
        Ok(Self {
            provider,
            certs,
            key,
            roots,
        })
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ApiError> {
    std::fs::read(path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file".to_string()
        } else {
            e.to_string()
        };
        node(format!(
            "cannot read the TLS {what} file {} ({why}); check [tls] {what} in the cluster file or --tls-{what}",
            path.display()
        ))
    })
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ApiError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            node(format!(
                "the TLS {what} file {} is not valid PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(node(format!(
            "no certificate in the TLS {what} file {} (expected a PEM block -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ApiError> {
    use std::os::unix::fs::PermissionsExt;
    let pem = read(path, "key")?;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "the TLS key file {} can be read by other users; run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key in it (expected a PEM block -----BEGIN PRIVATE KEY-----, -----BEGIN EC PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)".to_string(),
            other => format!("not a valid PEM private key: {other}"),
        };
        node(format!("the TLS key file {}: {why}", path.display()))
    })
}

/// The node's own certificate must be one its peers accept: signed by the CA, in date, for
/// client authentication (and server authentication, checked by the peers).
fn check_signed(
    certs: &[CertificateDer<'static>],
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    tls: &TlsOptions,
) -> Result<(), ApiError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| node(format!("cannot use the CA in {}: {e}", tls.ca.display())))?;
    let Some((end, intermediates)) = certs.split_first() else {
        return Err(node(format!("no certificate in {}", tls.cert.display())));
    };
    verifier
        .verify_client_cert(end, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(|e| {
            let (cert, ca) = (tls.cert.display(), tls.ca.display());
            node(match e {
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ) => format!(
                    "the certificate in {cert} is not signed by the CA in {ca}; sign it with that CA (deploy/OPERATIONS.md shows how) or set ca to the CA that signed it"
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => format!("the certificate in {cert} has expired; make a new one with the CA in {ca}"),
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
                ) => format!("the certificate in {cert} is not valid yet (is this machine's clock right?)"),
                rustls::Error::InvalidCertificate(
                    CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
                ) => format!(
                    "the certificate in {cert} is not for client authentication; a node's certificate needs extendedKeyUsage = serverAuth, clientAuth"
                ),
                other => format!("the certificate in {cert} is not accepted with the CA in {ca}: {other}"),
            })
        })
}

fn key_error(e: &rustls::Error, tls: &TlsOptions) -> ApiError {
    match e {
        rustls::Error::InconsistentKeys(_) => node(format!(
            "the key in {} does not belong to the certificate in {}; give the key the certificate was made for",
            tls.key.display(),
            tls.cert.display()
        )),
        other => node(format!(
            "cannot use the key in {} with the certificate in {}: {other}",
            tls.key.display(),
            tls.cert.display()
        )),
    }
}

fn connect_error(e: ClientConnectErr, addr: &str, tls: &TlsOptions) -> ApiError {
    match e {
        ClientConnectErr::Socket(e) => ApiError::NoNode {
            addr: addr.to_string(),
            hint: format!("{e}; is a workshop node running there?"),
        },
        ClientConnectErr::Encryption(e) => {
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            let ca = tls.ca.display();
            ApiError::Disconnected(match inner {
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) => format!(
                    "the node at {addr} has a certificate that is not valid for the address dialled; its certificate needs that host in its subjectAltName (or dial it by a name the certificate has)"
                ),
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                )) => format!(
                    "the node at {addr} has a certificate that the CA in {ca} did not sign; every node's certificate must come from the cluster's CA"
                ),
                Some(rustls::Error::InvalidCertificate(other)) => {
                    format!("the node at {addr} has a certificate this node refuses: {other:?}")
                }
                Some(rustls::Error::AlertReceived(alert)) => format!(
                    "the node at {addr} refused the TLS handshake ({alert:?}); does it trust the CA in {ca}?"
                ),
                Some(rustls::Error::InvalidMessage(_)) | None
                    if e.kind() == std::io::ErrorKind::UnexpectedEof
                        || e.kind() == std::io::ErrorKind::ConnectionReset =>
                {
                    format!("the node at {addr} closed the connection during the TLS handshake; is TLS set on that node too?")
                }
                Some(rustls::Error::InvalidMessage(m)) => format!(
                    "the node at {addr} does not speak TLS ({m:?}); is TLS set on that node too?"
                ),
                _ => format!("the TLS handshake with {addr} failed: {e}"),
            })
        }
        other => ApiError::Node(format!("cannot connect to {addr}: {other}")),
    }
}
