//! The VNC password file format (what `vncpasswd -f` writes): the password, cut or padded
//! to 8 bytes, DES-encrypted with a key every VNC server knows. It is obfuscation, not
//! protection: the file is readable only by daas and the session.

use des::cipher::{BlockEncrypt, KeyInit};

/// The fixed key of the format, as standard DES sees it (VNC's d3des reverses the bits of
/// each byte of `{23, 82, 107, 6, 35, 78, 88, 7}`).
const KEY: [u8; 8] = [0xe8, 0x4a, 0xd6, 0x60, 0xc4, 0x72, 0x1a, 0xe0];

/// The 8 bytes of a VNC password file for `password` (only its first 8 bytes count).
pub fn password_file(password: &str) -> [u8; 8] {
    let mut block = [0u8; 8];
    for (b, p) in block.iter_mut().zip(password.bytes()) {
        *b = p;
    }
    let cipher = des::Des::new_from_slice(&KEY).expect("an 8-byte key");
    let mut block = des::cipher::generic_array::GenericArray::from(block);
    cipher.encrypt_block(&mut block);
    block.into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_vncpasswd() {
        // `printf password | vncpasswd -f | xxd -p` with TigerVNC 1.12.
        assert_eq!(hex::encode(super::password_file("password")), "dbd83cfd727a1458");
    }
}
