//! Random bytes from the kernel, for ids, MAC addresses and temporary
//! names.

use crate::{Error, Result};

/// Fills `bytes` from the kernel's random source (`getrandom(2)`).
pub(crate) fn fill(bytes: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::io("read random bytes", e.into())),
        }
    }
    Ok(())
}

/// `bytes` random bytes, as lower-case hexadecimal.
pub(crate) fn hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    fill(&mut buffer)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_has_two_characters_a_byte_and_differs_between_calls() {
        let a = super::hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::hex(16).unwrap());
    }
}
