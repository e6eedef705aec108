//! Immediate TCP acknowledgements on this process's connections to its
//! MQTT broker.
//!
//! Why: a stock Mosquitto leaves Nagle's algorithm on. When it answers a
//! command with a PUBACK and, a moment later, forwards the device's state
//! echo on the same connection, Nagle holds the echo until the PUBACK's
//! segment is acknowledged — and Linux delays that acknowledgement by
//! ~40 ms because hearken has nothing to send back. A loopback capture shows
//! exactly that gap (docs/mqtt-latency.md). Setting `TCP_QUICKACK` after each
//! packet hearken reads sends the pending acknowledgement at once, and the
//! broker's echo follows. rumqttc owns its sockets, so they are found by
//! their peer address under `/proc/self/fd`.
//!
//! Not memory-unsafe even if a descriptor is closed and reused between the
//! scan and a call: both calls only read or set an option of whatever
//! socket the number names, with buffers owned here.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// The process's sockets whose peer is one of `peers`.
pub fn sockets_to(peers: &[SocketAddr]) -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:")))
        .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| peer_of(fd).is_some_and(|peer| peers.contains(&peer)))
        .collect()
}

/// Sends a delayed acknowledgement now, if one is pending, and leaves
/// delayed-ACK mode for a while. `false` when the call failed (the socket
/// is gone: the caller rescans on its next connection).
pub fn quickack(fd: RawFd) -> bool {
    let on: libc::c_int = 1;
    #[allow(unsafe_code)]
    // SAFETY: a plain setsockopt with a pointer to a local c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// The remote address of a connected IPv4/IPv6 socket.
fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    #[allow(unsafe_code)]
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    #[allow(unsafe_code)]
    // SAFETY: getpeername writes at most `len` bytes into `storage`, which we own.
    let rc = unsafe { libc::getpeername(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            #[allow(unsafe_code)]
            let v4: libc::sockaddr_in = unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            #[allow(unsafe_code)]
            let v6: libc::sockaddr_in6 = unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(v6.sin6_port), 0, v6.sin6_scope_id)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn finds_its_own_connection_by_peer_and_sets_quickack() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = listener.local_addr().unwrap();
        let stream = std::net::TcpStream::connect(peer).unwrap();
        let found = sockets_to(&[peer]);
        assert_eq!(found, [stream.as_raw_fd()]);
        assert!(quickack(stream.as_raw_fd()));
        assert!(sockets_to(&["127.0.0.1:1".parse().unwrap()]).is_empty());
    }
}
