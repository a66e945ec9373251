//! The RFB (VNC) protocol as far as the desktop relay needs it: the handshake on both
//! sides (daas answers the VNC server's password challenge, the browser gets security
//! type None) and a parser of client-to-server messages, so input from someone who does
//! not hold control is dropped on the server, never trusted to the browser.

use des::cipher::{BlockEncrypt, KeyInit};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version daas speaks on both sides.
pub const VERSION: &[u8; 12] = b"RFB 003.008\n";

/// Logs in to a VNC server with VNC authentication (security type 2): the 16-byte
/// challenge encrypted with DES, keyed by the password with each byte's bits reversed.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(server: &mut S, password: &str) -> anyhow::Result<()> {
    let mut greeting = [0u8; 12];
    server.read_exact(&mut greeting).await?;
    anyhow::ensure!(greeting.starts_with(b"RFB 003."), "the session does not speak RFB");
    server.write_all(VERSION).await?;
    let count = server.read_u8().await? as usize;
    if count == 0 {
        let reason = read_reason(server).await?;
        anyhow::bail!("the VNC server refused the connection: {reason}");
    }
    let mut types = vec![0u8; count];
    server.read_exact(&mut types).await?;
    anyhow::ensure!(types.contains(&2), "the VNC server does not offer VNC authentication");
    server.write_u8(2).await?;
    let mut challenge = [0u8; 16];
    server.read_exact(&mut challenge).await?;
    server.write_all(&answer(&challenge, password)).await?;
    if server.read_u32().await? != 0 {
        let reason = read_reason(server).await.unwrap_or_default();
        anyhow::bail!("the VNC server refused daas's password: {reason}");
    }
    Ok(())
}

/// The response to a VNC authentication challenge.
pub fn answer(challenge: &[u8; 16], password: &str) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password.bytes()) {
        *k = p.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).expect("an 8-byte key");
    let mut out = *challenge;
    for block in out.chunks_mut(8) {
        cipher.encrypt_block(des::cipher::generic_array::GenericArray::from_mut_slice(block));
    }
    out
}

async fn read_reason<S: AsyncRead + Unpin>(s: &mut S) -> anyhow::Result<String> {
    let len = s.read_u32().await?.min(4096) as usize;
    let mut reason = vec![0u8; len];
    s.read_exact(&mut reason).await?;
    Ok(String::from_utf8_lossy(&reason).into_owned())
}

/// What a complete client-to-server message is, for the relay's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Pixel format, encodings, update requests, fences: every viewer sends them.
    View,
    /// Keys, pointer, clipboard, desktop size: only the controller's get through.
    Input,
    /// Pointer and key events: input that also counts as activity.
    Activity,
    /// Never forwarded (e.g. xvp reboot requests).
    Drop,
}

/// Client-to-server messages cut out of the byte stream as they arrive (a message may be
/// split across WebSocket frames, or several may share one).
#[derive(Default)]
pub struct ClientStream {
    buffer: Vec<u8>,
}

/// A message the client sent that daas does not know: the connection is closed, since
/// the rest of the stream cannot be framed.
#[derive(Debug, thiserror::Error)]
#[error("unknown RFB client message type {0}")]
pub struct Unknown(pub u8);

/// Longest clipboard text accepted (10 MiB), so a client cannot make daas buffer more.
const MAX_CUT_TEXT: usize = 10 << 20;

impl ClientStream {
    /// Adds received bytes; returns each complete message with its class.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<(Class, Vec<u8>)>, Unknown> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some((class, len)) = frame(&self.buffer[start..])? {
            out.push((class, self.buffer[start..start + len].to_vec()));
            start += len;
        }
        self.buffer.drain(..start);
        Ok(out)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The class and length of the message at the start of `b`, or `None` until it is whole.
fn frame(b: &[u8]) -> Result<Option<(Class, usize)>, Unknown> {
    let Some(&kind) = b.first() else { return Ok(None) };
    let need = match kind {
        0 => Some((Class::View, 20)),                                  // SetPixelFormat
        2 => u16_at(b, 2).map(|n| (Class::View, 4 + 4 * n)),           // SetEncodings
        3 => Some((Class::View, 10)),                                  // FramebufferUpdateRequest
        4 => Some((Class::Activity, 8)),                               // KeyEvent
        5 => Some((Class::Activity, 6)),                               // PointerEvent
        150 => Some((Class::View, 10)),                                // EnableContinuousUpdates
        248 => b.get(8).map(|&n| (Class::View, 9 + n as usize)),       // ClientFence
        251 => b.get(6).map(|&n| (Class::Input, 8 + 16 * n as usize)), // SetDesktopSize
        252 => Some((Class::Drop, 4)),                                 // xvp
        6 => match u32_at(b, 4) {
            // ClientCutText; a negative length is the extended clipboard's.
            Some(len) => {
                let len = (len as i32).unsigned_abs() as usize;
                if len > MAX_CUT_TEXT {
                    return Err(Unknown(kind));
                }
                Some((Class::Input, 8 + len))
            }
            None => None,
        },
        255 => match b.get(1) {
            // QEMU: only the extended key event is defined for clients.
            Some(0) => Some((Class::Activity, 12)),
            Some(_) => return Err(Unknown(kind)),
            None => None,
        },
        _ => return Err(Unknown(kind)),
    };
    Ok(need.filter(|&(_, len)| b.len() >= len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_messages_split_and_joined() {
        let mut s = ClientStream::default();
        let key = [4u8, 1, 0, 0, 0, 0, 0, 0x61];
        let pointer = [5u8, 0, 0, 10, 0, 20];
        let mut joined = key.to_vec();
        joined.extend_from_slice(&pointer);
        joined.extend_from_slice(&[2, 0, 0, 2, 0, 0, 0, 0]); // SetEncodings, half of it
        let out = s.push(&joined).unwrap();
        assert_eq!(out, vec![(Class::Activity, key.to_vec()), (Class::Activity, pointer.to_vec())]);
        let out = s.push(&[0, 0, 0, 7]).unwrap();
        assert_eq!(out, vec![(Class::View, vec![2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7])]);
        assert!(s.push(&[]).unwrap().is_empty());
    }

    #[test]
    fn clipboard_and_desktop_size_are_input() {
        let mut s = ClientStream::default();
        let cut = [6u8, 0, 0, 0, 0, 0, 0, 2, b'h', b'i'];
        let size = [251u8, 0, 4, 0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 0, 0, 0, 0];
        let out = s.push(&[cut.as_slice(), size.as_slice()].concat()).unwrap();
        assert_eq!(out, vec![(Class::Input, cut.to_vec()), (Class::Input, size.to_vec())]);
        // Extended clipboard: the length is negative.
        let ext = [6u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 1, 0, 0, 0];
        assert_eq!(s.push(&ext).unwrap(), vec![(Class::Input, ext.to_vec())]);
    }

    #[test]
    fn unknown_types_are_refused() {
        assert!(ClientStream::default().push(&[77, 0, 0]).is_err());
        assert!(ClientStream::default().push(&[255, 9, 0, 0]).is_err());
        assert!(ClientStream::default().push(&[6, 0, 0, 0, 0x7f, 0, 0, 0]).is_err());
    }
}
