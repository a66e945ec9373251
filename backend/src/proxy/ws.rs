//! The server side of a WebSocket (RFC 6455) over an upgraded HTTP/1.1 connection, as the
//! desktop relay needs it, without the copies a general WebSocket library makes:
//!
//! - frames to the browser are written with their header in room kept before the payload
//!   ([`Outgoing`]), so what the relay reads from the VNC server goes out as it was read,
//!   in one write, never copied into a second buffer;
//! - the browser's frames are cut out of one read buffer as they arrive, so
//!   [`ServerSocket::recv`] may be dropped in a `select!` without losing a byte.
//!
//! Frame headers are parsed and formatted by tungstenite (the WebSocket library axum uses);
//! the handshake's accept key is tungstenite's too.

use std::io::{self, Cursor};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::{Buf, BytesMut};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::error::AppError;

/// The longest message accepted from a browser (16 MiB: the relay's longest clipboard text,
/// 10 MiB, and room for its framing); a longer one closes the connection.
const MAX_MESSAGE: usize = 16 << 20;

/// Checks a WebSocket handshake (a GET with `Upgrade: websocket`, version 13 and a key) and
/// answers it: the 101 response to return, and the connection once the client has it.
/// A request that is not a WebSocket handshake (or of another version) gets 400.
pub fn accept(request: &mut Request) -> Result<(Response, OnUpgrade), AppError> {
    let headers = request.headers();
    let has = |name, word: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case(word)))
    };
    if request.method() != Method::GET || !has(CONNECTION, "upgrade") || !has(UPGRADE, "websocket") {
        return Err(AppError::invalid("upgrade", "this is a WebSocket: connect with a WebSocket client"));
    }
    if headers.get(SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(AppError::invalid("sec-websocket-version", "WebSocket version 13 only"));
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or_else(|| AppError::invalid("sec-websocket-key", "a WebSocket handshake needs a key"))?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = request
        .extensions_mut()
        .remove::<OnUpgrade>()
        .ok_or_else(|| AppError::invalid("upgrade", "this connection cannot be upgraded"))?;
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, accept)
        .body(axum::body::Body::empty())
        .map_err(anyhow::Error::from)?;
    Ok((response, on_upgrade))
}

/// What the browser sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message (binary or text), its fragments joined.
    Message(Bytes),
    /// A ping, to be answered with a pong of the same payload.
    Ping(Bytes),
    /// A close frame, or the connection ended.
    Close,
}

/// A browser's WebSocket, server side.
pub struct ServerSocket<S = TokioIo<Upgraded>> {
    io: S,
    /// What was read and not yet cut into frames.
    inbox: BytesMut,
    /// The fragments of a message not yet final.
    fragments: Option<BytesMut>,
}

fn invalid(what: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> ServerSocket<S> {
    pub fn new(io: S) -> Self {
        Self { io, inbox: BytesMut::new(), fragments: None }
    }

    /// The next message, ping or close. Cancel-safe: bytes read before a cancellation stay
    /// in the buffer for the next call. Errors on what RFC 6455 forbids a client (unmasked
    /// or reserved frames, a message over 16 MiB, a control frame over 125 bytes).
    pub async fn recv(&mut self) -> io::Result<Incoming> {
        loop {
            if let Some(incoming) = self.cut()? {
                return Ok(incoming);
            }
            self.inbox.reserve(4096);
            if self.io.read_buf(&mut self.inbox).await? == 0 {
                return Ok(Incoming::Close);
            }
        }
    }

    /// The next whole frame's meaning, if the buffer holds one.
    fn cut(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            let mut cursor = Cursor::new(&self.inbox[..]);
            let Some((header, len)) = FrameHeader::parse(&mut cursor).map_err(invalid)? else { return Ok(None) };
            let head = cursor.position() as usize;
            let len = usize::try_from(len).ok().filter(|&len| len <= MAX_MESSAGE).ok_or_else(|| invalid("too long"))?;
            if self.inbox.len() < head + len {
                self.inbox.reserve(head + len - self.inbox.len());
                return Ok(None);
            }
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(invalid("a reserved bit is set"));
            }
            let mask = header.mask.ok_or_else(|| invalid("a client's frame must be masked"))?;
            let mut payload = self.inbox.split_to(head + len);
            payload.advance(head);
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            if let OpCode::Control(_) = header.opcode {
                if len > 125 || !header.is_final {
                    return Err(invalid("a control frame over 125 bytes or fragmented"));
                }
            }
            match (header.opcode, self.fragments.as_mut()) {
                (OpCode::Data(Data::Binary | Data::Text), None) if header.is_final => {
                    return Ok(Some(Incoming::Message(payload.freeze())))
                }
                (OpCode::Data(Data::Binary | Data::Text), None) => self.fragments = Some(payload),
                (OpCode::Data(Data::Continue), Some(fragments)) => {
                    if fragments.len() + len > MAX_MESSAGE {
                        return Err(invalid("too long"));
                    }
                    fragments.unsplit(payload);
                    if header.is_final {
                        let message = self.fragments.take().unwrap_or_default().freeze();
                        return Ok(Some(Incoming::Message(message)));
                    }
                }
                (OpCode::Control(Control::Ping), _) => return Ok(Some(Incoming::Ping(payload.freeze()))),
                (OpCode::Control(Control::Pong), _) => {}
                (OpCode::Control(Control::Close), _) => return Ok(Some(Incoming::Close)),
                _ => return Err(invalid("an unexpected frame")),
            }
        }
    }

    /// Sends one frame of `opcode` with `payload` (a short one: it is copied).
    async fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        let header = FrameHeader { opcode, ..FrameHeader::default() };
        let mut frame = Vec::with_capacity(header.len(payload.len() as u64) + payload.len());
        header.format(payload.len() as u64, &mut frame).map_err(io::Error::other)?;
        frame.extend_from_slice(payload);
        self.io.write_all(&frame).await
    }

    /// Sends a binary message (a short one: it is copied; see [`Outgoing`] for a stream).
    pub async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(OpCode::Data(Data::Binary), payload).await
    }

    /// Sends the `n` payload bytes of `out` as one binary message, without copying them.
    pub async fn send_outgoing(&mut self, out: &mut Outgoing, n: usize) -> io::Result<()> {
        self.io.write_all(out.frame(n)).await
    }

    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(OpCode::Control(Control::Pong), payload).await
    }

    /// Closes the WebSocket normally (code 1000) and ends the connection.
    pub async fn close(&mut self) -> io::Result<()> {
        self.send_frame(OpCode::Control(Control::Close), &1000u16.to_be_bytes()).await?;
        self.io.shutdown().await
    }
}

/// A buffer for messages to the browser: room for the longest server frame header, then the
/// payload, which the relay fills by reading from the VNC server. It starts at 16 KiB and
/// doubles (to 256 KiB) while reads fill it, so a streaming desktop moves large frames and
/// an idle one holds little; it shrinks back after a run of small reads.
pub struct Outgoing {
    buf: Vec<u8>,
    /// Reads in a row that used under an eighth of the payload's room.
    small: u8,
}

impl Outgoing {
    /// The longest header of an unmasked server frame: 2 bytes, then an 8-byte length.
    const HEADROOM: usize = 10;
    const MIN: usize = 16 << 10;
    const MAX: usize = 256 << 10;
    /// Small reads in a row before the buffer shrinks.
    const SHRINK_AFTER: u8 = 16;

    pub fn new() -> Self {
        Self { buf: vec![0; Self::HEADROOM + Self::MIN], small: 0 }
    }

    /// Where the next payload is read into.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[Self::HEADROOM..]
    }

    /// The frame of the first `n` payload bytes, its header written just before them; then
    /// sizes the buffer for the next read from how full this one was.
    fn frame(&mut self, n: usize) -> &[u8] {
        let room = self.buf.len() - Self::HEADROOM;
        let header = FrameHeader { opcode: OpCode::Data(Data::Binary), ..FrameHeader::default() };
        let start = Self::HEADROOM - header.len(n as u64);
        header.format(n as u64, &mut &mut self.buf[start..Self::HEADROOM]).expect("room for the longest header");
        let resize = if n == room && room < Self::MAX {
            Some(room * 2)
        } else if n < room / 8 && room > Self::MIN {
            self.small += 1;
            (self.small >= Self::SHRINK_AFTER).then_some(Self::MIN)
        } else {
            self.small = 0;
            None
        };
        if let Some(room) = resize {
            // Only the frame's bytes are kept: the next read overwrites the rest.
            let mut buf = vec![0; Self::HEADROOM + room];
            buf[start..Self::HEADROOM + n].copy_from_slice(&self.buf[start..Self::HEADROOM + n]);
            self.buf = buf;
            self.small = 0;
        }
        &self.buf[start..Self::HEADROOM + n]
    }
}

impl Default for Outgoing {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::Frame;

    /// A client's frame as a browser sends it: masked.
    fn client_frame(opcode: OpCode, is_final: bool, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader { is_final, opcode, mask: Some([1, 2, 3, 4]), ..FrameHeader::default() };
        let frame = Frame::from_payload(header, Bytes::copy_from_slice(payload));
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn messages_split_joined_and_fragmented_arrive_whole() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut socket = ServerSocket::new(server);
        let binary = OpCode::Data(Data::Binary);
        let mut bytes = client_frame(binary, true, b"hello");
        bytes.extend(client_frame(OpCode::Control(Control::Ping), true, b"p"));
        bytes.extend(client_frame(binary, false, b"fra"));
        bytes.extend(client_frame(OpCode::Control(Control::Pong), true, b""));
        bytes.extend(client_frame(OpCode::Data(Data::Continue), true, &[7; 300]));
        bytes.extend(client_frame(OpCode::Control(Control::Close), true, &1000u16.to_be_bytes()));
        // One byte at a time: every frame is split across reads.
        let writer = tokio::spawn(async move {
            for byte in bytes {
                client.write_all(&[byte]).await.unwrap();
            }
            client
        });
        assert_eq!(socket.recv().await.unwrap(), Incoming::Message(Bytes::from_static(b"hello")));
        assert_eq!(socket.recv().await.unwrap(), Incoming::Ping(Bytes::from_static(b"p")));
        let mut joined = b"fra".to_vec();
        joined.extend([7; 300]);
        assert_eq!(socket.recv().await.unwrap(), Incoming::Message(Bytes::from(joined)));
        assert_eq!(socket.recv().await.unwrap(), Incoming::Close);
        drop(writer.await.unwrap());
        assert_eq!(socket.recv().await.unwrap(), Incoming::Close, "the end of the connection");
    }

    #[tokio::test]
    async fn what_a_client_may_not_send_is_an_error() {
        let mut unmasked = Vec::new();
        Frame::message(b"x".to_vec(), OpCode::Data(Data::Binary), true).format(&mut unmasked).unwrap();
        for bad in [
            unmasked,
            // A continuation without a first fragment; a ping over 125 bytes.
            client_frame(OpCode::Data(Data::Continue), true, b"x"),
            client_frame(OpCode::Control(Control::Ping), true, &[0; 126]),
        ] {
            let (mut client, server) = tokio::io::duplex(1024);
            client.write_all(&bad).await.unwrap();
            assert_eq!(ServerSocket::new(server).recv().await.unwrap_err().kind(), io::ErrorKind::InvalidData);
        }
    }

    #[tokio::test]
    async fn outgoing_frames_carry_the_payload_as_read_and_the_buffer_follows_the_stream() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut socket = ServerSocket::new(server);
        let mut out = Outgoing::new();
        let mut sizes = Vec::new();
        // Full reads double the room up to 256 KiB; a run of small ones shrinks it.
        for _ in 0..6 {
            let room = out.payload_mut().len();
            sizes.push(room);
            out.payload_mut().fill(0xab);
            socket.send_outgoing(&mut out, room).await.unwrap();
        }
        assert_eq!(sizes, [16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 256 << 10]);
        for _ in 0..Outgoing::SHRINK_AFTER {
            out.payload_mut()[..3].copy_from_slice(b"abc");
            socket.send_outgoing(&mut out, 3).await.unwrap();
        }
        assert_eq!(out.payload_mut().len(), 16 << 10);
        drop(socket);
        // A WebSocket client reads them back as binary messages.
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            client,
            tungstenite::protocol::Role::Client,
            Some(tungstenite::protocol::WebSocketConfig::default().max_frame_size(None).max_message_size(None)),
        )
        .await;
        use futures_util::StreamExt;
        for size in sizes {
            assert_eq!(ws.next().await.unwrap().unwrap(), tungstenite::Message::binary(vec![0xab; size]));
        }
        assert_eq!(ws.next().await.unwrap().unwrap(), tungstenite::Message::binary(b"abc".to_vec()));
    }
}
