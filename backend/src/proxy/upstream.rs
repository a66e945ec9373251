//! How the proxies reach a session. An endpoint is `host:port` (a Kubernetes service),
//! `unix:PATH` (the local runtime: a socket in the session's folder, its only way in,
//! since the session has a network namespace of its own), or `relay:KEY@host:port` (the
//! Slurm runtime: the relay of the session's node program, which lets a connection through
//! to the session's socket only after the line `KEY`, the session's relay key, so that
//! nobody else on the cluster's network reaches the session's server).
//!
//! [`Connector`] is the notebook proxy's pooled client's connector: a URI's authority
//! names the endpoint ([`authority`]), so each session gets connections of its own.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A connection to a session.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Opens a connection to an endpoint (`host:port`, `unix:PATH` or `relay:KEY@host:port`).
pub async fn connect(endpoint: &str) -> io::Result<Stream> {
    if let Some(path) = endpoint.strip_prefix("unix:") {
        return Ok(Stream::Unix(UnixStream::connect(path).await?));
    }
    let (key, address) = match endpoint.strip_prefix("relay:").and_then(|r| r.split_once('@')) {
        Some((key, address)) => (Some(key), address),
        None => (None, endpoint),
    };
    let mut stream = TcpStream::connect(address).await?;
    // Keystrokes and kernel messages are small and want to go at once.
    stream.set_nodelay(true)?;
    if let Some(key) = key {
        use tokio::io::AsyncWriteExt;
        stream.write_all(format!("{key}\n").as_bytes()).await?;
    }
    Ok(Stream::Tcp(stream))
}

/// The authority of a URI that [`Connector`] connects to `endpoint`: plain TCP endpoints as
/// they are, others (a socket path, a relay with its key) hex-encoded under `.sock`.
pub fn authority(endpoint: &str) -> String {
    if endpoint.starts_with("unix:") || endpoint.starts_with("relay:") {
        format!("{}.sock", hex::encode(endpoint))
    } else {
        endpoint.to_owned()
    }
}

/// The endpoint an authority written by [`authority`] names.
fn endpoint_of(uri: &Uri) -> io::Result<String> {
    let authority = uri.authority().ok_or_else(|| io::Error::other("a URI without an authority"))?.as_str();
    match authority.strip_suffix(".sock") {
        Some(hex) => String::from_utf8(hex::decode(hex).map_err(io::Error::other)?).map_err(io::Error::other),
        None => Ok(authority.to_owned()),
    }
}

/// Connects the pooled HTTP client to sessions, over TCP or a Unix socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct Connector;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move { Ok(TokioIo::new(connect(&endpoint_of(&uri)?).await?)) })
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_name_their_endpoints() {
        for endpoint in [
            "127.0.0.1:8888",
            "svc.ns.svc:8888",
            "unix:/srv/daas/sessions/x/run/server.sock",
            "relay:k3y@10.0.0.7:41234",
        ] {
            let uri: Uri = format!("http://{}/lab?x=1", authority(endpoint)).parse().unwrap();
            assert_eq!(endpoint_of(&uri).unwrap(), endpoint);
        }
    }

    #[tokio::test]
    async fn connects_to_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
        assert!(matches!(connect(&format!("unix:{}", path.display())).await.unwrap(), Stream::Unix(_)));
        assert!(accepted.await.unwrap());
    }
}
