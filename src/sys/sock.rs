//! Stream-socket I/O that carries file descriptors (`SCM_RIGHTS`) beside the bytes.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

/// The kernel's limit on descriptors in one message (`SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

fn errno(e: Errno) -> io::Error {
    e.into()
}

/// Sends `bufs` on `sock`, with `fds` attached to the first byte. Never raises SIGPIPE.
///
/// With `nonblocking`, a full socket buffer returns `WouldBlock`. Retries on `EINTR`.
pub(crate) fn send(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    loop {
        let r = if fds.is_empty() {
            rustix::net::sendmsg(sock, bufs, &mut SendAncillaryBuffer::default(), flags)
        } else {
            let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
            }
            rustix::net::sendmsg(sock, bufs, &mut control, flags)
        };
        match r {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(errno(e)),
        }
    }
}

/// Receives into `buf`; descriptors that arrive are appended to `fds` (close-on-exec set).
///
/// Returns 0 at end-of-file. With `nonblocking`, no data returns `WouldBlock`.
pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    recv_with(sock, buf, fds, flags)
}

/// Copies the next message into `buf` without taking it, as [`recv`] with `nonblocking`
/// would receive it; its descriptors are duplicated into `fds` (the message keeps its own).
pub(crate) fn peek(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    recv_with(sock, buf, fds, RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT | RecvFlags::PEEK)
}

fn recv_with(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>, flags: RecvFlags) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock, &mut iov, &mut control, flags) {
            Ok(msg) => {
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(rights) = m {
                        fds.extend(rights);
                    }
                }
                return Ok(msg.bytes);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(errno(e)),
        }
    }
}
