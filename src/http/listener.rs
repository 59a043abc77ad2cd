//! The seam between accepted TCP connections and HTTP: an `Acceptor` turns a TCP
//! stream into the byte stream HTTP runs on.
//!
//! Owns: the `Acceptor` trait and the plain-TCP acceptor. A rustls acceptor
//! (security issue) implements the same trait, doing its handshake inside
//! `accept`, and reports the negotiated ALPN through the stream it returns.
//! Must not: parse HTTP.

use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Turns an accepted TCP connection into the stream HTTP is served on. Called on
/// the connection's own task, so a slow handshake never blocks `accept`.
pub trait Acceptor: Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self, stream: TcpStream) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

/// Cleartext HTTP (HTTP/1.1, and HTTP/2 with prior knowledge).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainAcceptor;

impl Acceptor for PlainAcceptor {
    type Io = TcpStream;

    async fn accept(&self, stream: TcpStream) -> std::io::Result<TcpStream> {
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}
