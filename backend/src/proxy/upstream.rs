//! How the proxies reach a session. An endpoint is `host:port` (a Kubernetes service)
//! or `unix:PATH` (the local runtime: a socket in the session's folder, its only way in,
//! since the session has a network namespace of its own).
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

/// Opens a connection to an endpoint (`host:port` or `unix:PATH`).
pub async fn connect(endpoint: &str) -> io::Result<Stream> {
    match endpoint.strip_prefix("unix:") {
        Some(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
        None => {
            let stream = TcpStream::connect(endpoint).await?;
            // Keystrokes and kernel messages are small and want to go at once.
            stream.set_nodelay(true)?;
            Ok(Stream::Tcp(stream))
        }
    }
}

/// The authority of a URI that [`Connector`] connects to `endpoint`: TCP endpoints as they
/// are, socket paths hex-encoded under `.sock` (a path is not a host name).
pub fn authority(endpoint: &str) -> String {
    match endpoint.strip_prefix("unix:") {
        Some(path) => format!("{}.sock", hex::encode(path)),
        None => endpoint.to_owned(),
    }
}

/// The endpoint an authority written by [`authority`] names.
fn endpoint_of(uri: &Uri) -> io::Result<String> {
    let authority = uri.authority().ok_or_else(|| io::Error::other("a URI without an authority"))?.as_str();
    match authority.strip_suffix(".sock") {
        Some(hex) => {
            let path = hex::decode(hex).map_err(io::Error::other)?;
            Ok(format!("unix:{}", String::from_utf8(path).map_err(io::Error::other)?))
        }
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
        for endpoint in ["127.0.0.1:8888", "svc.ns.svc:8888", "unix:/srv/daas/sessions/x/run/server.sock"] {
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
