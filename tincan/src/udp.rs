//! The link socket with batched I/O: `recvmmsg` with UDP GRO in (a GRO'ed receive holds
//! several datagrams of one size, split here by the segment size the kernel reports), and
//! `sendmmsg` out, where each message is a run of equal-size datagrams to one address sent as
//! one UDP GSO send (`UDP_SEGMENT`). A kernel or device that refuses GSO gets one datagram
//! per message from then on.

use log::{info, warn};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use std::ffi::c_void;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};

// linux/udp.h
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS`, 64 on older kernels).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload in one GSO send: what fits in one IPv4 packet of 64 KB.
pub const GSO_MAX_BYTES: usize = 65_507;
/// Largest datagram sent with GSO: one that fits an Ethernet-MTU underlay unfragmented (the
/// kernel refuses GSO segments larger than the path allows).
pub const GSO_MAX_STRIDE: usize = 1_472;
/// Socket buffers asked for (forced past the sysctl limits where we may).
const SOCK_BUF: usize = 8 << 20;

/// What the link socket counts; readable with `get_state`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct UdpCounters {
    /// `recvmmsg` calls that returned datagrams.
    pub udp_rx_batches: u64,
    /// Receives the kernel coalesced (GRO), and the datagrams in them.
    pub udp_gro_receives: u64,
    pub udp_gro_datagrams: u64,
    /// Receives cut short by a too-small buffer (dropped).
    pub udp_rx_truncated: u64,
    /// `sendmmsg` calls, GSO messages sent, and the datagrams in them.
    pub udp_tx_batches: u64,
    pub udp_gso_sends: u64,
    pub udp_gso_datagrams: u64,
    /// GSO sends the kernel refused, sent again one datagram at a time.
    pub udp_gso_fallbacks: u64,
}

/// The datagrams of one GRO receive of `len` bytes with segment size `seg` (0: not coalesced):
/// `seg` bytes each, the last possibly shorter.
pub fn gro_segments(len: usize, seg: usize) -> impl Iterator<Item = Range<usize>> {
    let seg = if seg == 0 || seg > len {
        len.max(1)
    } else {
        seg
    };
    (0..len).step_by(seg).map(move |s| s..(s + seg).min(len))
}

/// Datagrams to one address, `buf[start..start + len]`, each `stride` bytes but the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub to: SocketAddr,
    pub start: usize,
    pub len: usize,
    pub stride: usize,
    /// The caller's tag of the first datagrams (the link), for errors.
    pub tag: usize,
}

impl Run {
    pub fn segments(&self) -> usize {
        self.len.div_ceil(self.stride)
    }
}

/// Whether `len` bytes of datagrams of `stride` bytes to `to`, right behind `run` in the
/// buffer, may be sent in the same GSO send: same address, same size (or one shorter datagram
/// ending the run), every datagram of the run full size, within the kernel's limits.
pub fn joins(run: &Run, to: SocketAddr, len: usize, stride: usize) -> bool {
    let total = run.len + len;
    run.to == to
        && run.stride <= GSO_MAX_STRIDE
        && run.len.is_multiple_of(run.stride)
        && (stride == run.stride || (stride == len && len < run.stride))
        && total <= GSO_MAX_BYTES
        && total.div_ceil(run.stride) <= GSO_MAX_SEGMENTS
}

/// Sealed datagrams waiting to be sent, grouped into runs for GSO.
pub struct TxBatch {
    buf: Vec<u8>,
    used: usize,
    runs: Vec<Run>,
    /// Room kept free behind the queued datagrams for the next ones.
    window: usize,
}

impl TxBatch {
    /// A batch that holds `cap` bytes of datagrams and always has `window` bytes of room for
    /// the next (the caller flushes when [`TxBatch::full`]).
    pub fn new(cap: usize, window: usize) -> TxBatch {
        TxBatch {
            buf: vec![0; cap + window],
            used: 0,
            runs: Vec::with_capacity(GSO_MAX_SEGMENTS),
            window,
        }
    }

    /// Where the next datagrams go, then [`TxBatch::commit`] them.
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.used..]
    }

    /// No room for another window of datagrams: send the batch.
    pub fn full(&self) -> bool {
        self.buf.len() - self.used < self.window
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Queues the `len` bytes written at [`TxBatch::spare`]: datagrams of `stride` bytes (the
    /// last may be shorter) to `to`.
    pub fn commit(&mut self, len: usize, stride: usize, to: SocketAddr, tag: usize) {
        let len = len.min(self.buf.len() - self.used);
        if len == 0 {
            return;
        }
        let stride = if stride == 0 || stride > len {
            len
        } else {
            stride
        };
        match self.runs.last_mut() {
            Some(run) if joins(run, to, len, stride) => run.len += len,
            _ => self.runs.push(Run {
                to,
                start: self.used,
                len,
                stride,
                tag,
            }),
        }
        self.used += len;
    }

    /// Copies `data` (datagrams of `stride` bytes) into the batch.
    pub fn push(&mut self, data: &[u8], stride: usize, to: SocketAddr, tag: usize) {
        let n = data.len().min(self.spare().len());
        self.spare()[..n].copy_from_slice(&data[..n]);
        self.commit(n, stride, to, tag);
    }

    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    pub fn bytes(&self, run: &Run) -> &[u8] {
        &self.buf[run.start..run.start + run.len]
    }

    pub fn clear(&mut self) {
        self.runs.clear();
        self.used = 0;
    }
}

/// Receive buffers for one `recvmmsg`.
pub struct RxBatch {
    buf: Vec<u8>,
    slot: usize,
    names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<CmsgBuf>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    got: Vec<(usize, Option<SocketAddr>, usize)>,
}

#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

impl RxBatch {
    /// `count` receives of up to `slot` bytes each (64 KB holds a full GRO receive).
    pub fn new(count: usize, slot: usize) -> RxBatch {
        RxBatch {
            buf: vec![0; count * slot],
            slot,
            // SAFETY: sockaddr_storage is plain data; zeroes are a valid value.
            names: vec![unsafe { zeroed() }; count],
            ctrl: vec![CmsgBuf([0; 64]); count],
            iovs: Vec::with_capacity(count),
            hdrs: Vec::with_capacity(count),
            got: Vec::with_capacity(count),
        }
    }

    /// Receives in the last batch.
    pub fn len(&self) -> usize {
        self.got.len()
    }

    /// Receive `i`: its sender and its datagrams.
    pub fn datagrams(&self, i: usize) -> (Option<SocketAddr>, impl Iterator<Item = &[u8]>) {
        let (len, from, seg) = self.got[i];
        let base = &self.buf[i * self.slot..i * self.slot + len];
        (from, gro_segments(len, seg).map(move |r| &base[r]))
    }
}

pub struct BatchSocket {
    sock: Socket,
    /// An IPv6 socket that also carries IPv4 (dual-stack): IPv4 peers are written to it as
    /// v4-mapped addresses, and read back as plain IPv4 ones.
    dual: bool,
    /// False once the kernel refused a GSO send.
    gso: bool,
    /// Largest datagram sent with GSO: lowered when the kernel says a GSO segment is larger
    /// than the underlay device allows (`EMSGSIZE`: an underlay MTU below `link_mtu`).
    gso_max_stride: usize,
    /// `send_batch`'s message tables, kept so that sending allocates nothing once warm.
    scratch: SendScratch,
}

/// The tables one `sendmmsg` is built from: which bytes go in which message, and the
/// addresses, iovecs, control buffers and headers pointing at them.
#[derive(Default)]
struct SendScratch {
    /// (run index, bytes, GSO stride) per message.
    msgs: Vec<(usize, Range<usize>, Option<u16>)>,
    names: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    iovs: Vec<libc::iovec>,
    ctrl: Vec<CmsgBuf>,
    hdrs: Vec<libc::mmsghdr>,
}

impl BatchSocket {
    /// The link socket on `port` of every address: IPv6 and IPv4 on one dual-stack socket, or
    /// IPv4 alone where the host has no IPv6 (disabled, or `net.ipv6.bindv6only` refusing
    /// the mix).
    pub fn bind_any(port: u16) -> io::Result<BatchSocket> {
        match BatchSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))) {
            Ok(s) => Ok(s),
            Err(e) => {
                log::warn!("links: no IPv6 socket on port {port} ({e}): IPv4 only");
                BatchSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
            }
        }
    }

    /// A nonblocking UDP socket on `addr` with deep buffers and GRO where the kernel has it;
    /// on the IPv6 wildcard address, dual-stack.
    pub fn bind(addr: SocketAddr) -> io::Result<BatchSocket> {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        let dual = addr.ip() == std::net::IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        if dual {
            s.set_only_v6(false)?;
        }
        // Bursts arrive faster than one wake-up drains them: deep buffers absorb them.
        if setsockopt(
            &s,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            SOCK_BUF as libc::c_int,
        )
        .is_err()
        {
            let _ = s.set_recv_buffer_size(SOCK_BUF);
        }
        if setsockopt(
            &s,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            SOCK_BUF as libc::c_int,
        )
        .is_err()
        {
            let _ = s.set_send_buffer_size(SOCK_BUF);
        }
        let gro = setsockopt(&s, libc::SOL_UDP, UDP_GRO, 1).is_ok();
        // Never DF: datagrams cut for `link_mtu` still cross a smaller path (a tunnel, PPPoE) in
        // IP fragments rather than vanish into a path-MTU black hole.
        // On a dual-stack socket the IPv4 option covers the v4-mapped peers.
        let pmtu = [
            (addr.is_ipv4() || dual).then_some((
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DONT,
            )),
            addr.is_ipv6().then_some((
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DONT,
            )),
        ];
        for (level, name, value) in pmtu.into_iter().flatten() {
            if let Err(e) = setsockopt(&s, level, name, value) {
                log::warn!(
                    "link socket: path MTU discovery off: {e}: datagrams larger than the path are dropped"
                );
            }
        }
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        info!(
            "links on UDP {addr} (receive {} KB, send {} KB, GRO {})",
            s.recv_buffer_size().unwrap_or(0) >> 10,
            s.send_buffer_size().unwrap_or(0) >> 10,
            if gro { "on" } else { "off" }
        );
        Ok(BatchSocket {
            sock: s,
            dual,
            gso: true,
            gso_max_stride: GSO_MAX_STRIDE,
            scratch: SendScratch::default(),
        })
    }

    /// Keeps what `old` learned (whether GSO works) across a rebind.
    pub fn inherit(&mut self, old: &BatchSocket) {
        self.gso = old.gso;
        self.gso_max_stride = old.gso_max_stride;
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sends one datagram.
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(data, &self.os_addr(to).into())
    }

    /// `to` as this socket takes it: v4-mapped on a dual-stack socket.
    fn os_addr(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(v4) if self.dual => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            other => other,
        }
    }

    /// Sends every run of `batch` with as few `sendmmsg` calls as the kernel allows; calls
    /// `failed` for each run (or part of one) it could not send. Leaves `batch` as it was.
    pub fn send_batch(
        &mut self,
        batch: &TxBatch,
        c: &mut UdpCounters,
        mut failed: impl FnMut(&Run),
    ) {
        let runs = batch.runs();
        let mut scratch = std::mem::take(&mut self.scratch);
        let SendScratch {
            msgs,
            names,
            iovs,
            ctrl,
            hdrs,
        } = &mut scratch;
        msgs.clear();
        names.clear();
        iovs.clear();
        hdrs.clear();
        // One message per run with GSO, else one per datagram.
        for (i, run) in runs.iter().enumerate() {
            let r = run.start..run.start + run.len;
            if self.gso && run.segments() > 1 && run.stride <= self.gso_max_stride {
                msgs.push((i, r, Some(run.stride as u16)));
            } else {
                msgs.extend(
                    gro_segments(run.len, run.stride)
                        .map(|s| (i, run.start + s.start..run.start + s.end, None)),
                );
            }
        }
        names.extend(runs.iter().map(|r| sockaddr(self.os_addr(r.to))));
        iovs.extend(msgs.iter().map(|(_, r, _)| libc::iovec {
            iov_base: batch.buf[r.clone()].as_ptr() as *mut c_void,
            iov_len: r.len(),
        }));
        if ctrl.len() < msgs.len() {
            ctrl.resize(msgs.len(), CmsgBuf([0; 64]));
        }
        for (k, (run, _, gso)) in msgs.iter().enumerate() {
            // SAFETY: plain data, zero is valid.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = &names[*run].0 as *const _ as *mut c_void;
            h.msg_hdr.msg_namelen = names[*run].1;
            h.msg_hdr.msg_iov = &mut iovs[k];
            h.msg_hdr.msg_iovlen = 1;
            if let Some(seg) = gso {
                h.msg_hdr.msg_control = ctrl[k].0.as_mut_ptr().cast();
                // SAFETY: the control buffer is 64 aligned bytes, room for one u16 cmsg.
                unsafe {
                    h.msg_hdr.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), *seg);
                }
            }
            hdrs.push(h);
        }
        let mut k = 0;
        while k < hdrs.len() {
            // SAFETY: every header points at live names, iovecs and control buffers above.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd(),
                    hdrs[k..].as_mut_ptr(),
                    (hdrs.len() - k) as libc::c_uint,
                    0,
                )
            };
            c.udp_tx_batches += 1;
            if n > 0 {
                for (_, r, gso) in &msgs[k..k + n as usize] {
                    if let Some(seg) = gso {
                        c.udp_gso_sends += 1;
                        c.udp_gso_datagrams += r.len().div_ceil(*seg as usize) as u64;
                    }
                }
                k += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            let (run, _, gso) = &msgs[k];
            let run = &runs[*run];
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EIO | libc::EINVAL) if gso.is_some() => {
                    if self.gso {
                        warn!("the kernel refuses UDP GSO ({e}): sending one datagram per message from now on");
                    }
                    self.gso = false;
                    c.udp_gso_fallbacks += 1;
                    self.send_one_by_one(batch, run, &mut failed);
                }
                // A GSO segment larger than the underlay device's MTU: the path is smaller than
                // `link_mtu`. Datagrams this size go out one by one from now on (the kernel
                // fragments them, as IP_PMTUDISC_DONT asks).
                Some(libc::EMSGSIZE) if gso.is_some() => {
                    if run.stride <= self.gso_max_stride {
                        warn!("the underlay is smaller than link_mtu ({e}): {}-byte datagrams go out in IP fragments; set \"link_mtu\" to the underlay's MTU", run.stride);
                        self.gso_max_stride = run.stride - 1;
                    }
                    c.udp_gso_fallbacks += 1;
                    self.send_one_by_one(batch, run, &mut failed);
                }
                _ => failed(run),
            }
            k += 1;
        }
        self.scratch = scratch;
    }

    /// Sends the datagrams of `run` one per message.
    fn send_one_by_one(&self, batch: &TxBatch, run: &Run, failed: &mut impl FnMut(&Run)) {
        let bytes = batch.bytes(run);
        for s in gro_segments(run.len, run.stride) {
            if self.send_to(&bytes[s], run.to).is_err() {
                failed(run);
            }
        }
    }

    /// Receives up to a batch of datagrams (without blocking); 0 when none are waiting.
    pub fn recv_batch(&mut self, rx: &mut RxBatch, c: &mut UdpCounters) -> io::Result<usize> {
        rx.got.clear();
        rx.iovs.clear();
        rx.hdrs.clear();
        let count = rx.names.len();
        for chunk in rx.buf.chunks_mut(rx.slot).take(count) {
            rx.iovs.push(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
        }
        for i in 0..count {
            // SAFETY: plain data, zero is valid.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut rx.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut rx.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = rx.ctrl[i].0.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = rx.ctrl[i].0.len() as _;
            rx.hdrs.push(h);
        }
        let n = loop {
            // SAFETY: every header points at live buffers of the batch.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd(),
                    rx.hdrs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        };
        c.udp_rx_batches += 1;
        for h in &rx.hdrs[..n] {
            let len = h.msg_len as usize;
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                c.udp_rx_truncated += 1;
                rx.got.push((0, None, 0));
                continue;
            }
            let seg = gro_size(&h.msg_hdr);
            if seg > 0 && seg < len {
                c.udp_gro_receives += 1;
                c.udp_gro_datagrams += len.div_ceil(seg) as u64;
            }
            // SAFETY: the kernel filled in msg_namelen bytes of the name.
            let from = unsafe { socket_addr(&*h.msg_hdr.msg_name.cast(), h.msg_hdr.msg_namelen) };
            rx.got.push((len, from, seg));
        }
        Ok(n)
    }
}

/// The segment size of a GRO receive (its `UDP_GRO` control message), 0 without one.
fn gro_size(m: &libc::msghdr) -> usize {
    // SAFETY: walks the control messages the kernel wrote within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return v.max(0) as usize;
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    0
}

fn setsockopt(s: &Socket, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a c_int by pointer with its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: plain data, zero is valid; the casts write within the storage.
    unsafe {
        let mut st: libc::sockaddr_storage = zeroed();
        let len = match a {
            SocketAddr::V4(a) => {
                let s = &mut *(&mut st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                s.sin_family = libc::AF_INET as libc::sa_family_t;
                s.sin_port = a.port().to_be();
                s.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let s = &mut *(&mut st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                s.sin6_port = a.port().to_be();
                s.sin6_addr.s6_addr = a.ip().octets();
                s.sin6_flowinfo = a.flowinfo();
                s.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        (st, len as libc::socklen_t)
    }
}

/// # Safety
/// `len` bytes of `st` must have been written by the kernel.
unsafe fn socket_addr(st: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match st.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            let s = &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(s.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(s.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            let s = &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
            let ip = Ipv6Addr::from(s.sin6_addr.s6_addr);
            let port = u16::from_be(s.sin6_port);
            // An IPv4 peer on the dual-stack socket: the link table knows it by its IPv4 address.
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    s.sin6_flowinfo,
                    s.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_gro_receive_splits_into_its_segments_the_last_shorter() {
        let r: Vec<_> = gro_segments(3_000, 1_400).collect();
        assert_eq!(r, vec![0..1_400, 1_400..2_800, 2_800..3_000]);
        let r: Vec<_> = gro_segments(2_800, 1_400).collect();
        assert_eq!(r, vec![0..1_400, 1_400..2_800]);
        // No GRO control message, or a segment size larger than the receive: one datagram.
        assert_eq!(gro_segments(500, 0).collect::<Vec<_>>(), vec![0..500]);
        assert_eq!(gro_segments(500, 1_400).collect::<Vec<_>>(), vec![0..500]);
        assert_eq!(gro_segments(0, 0).count(), 0);
    }

    #[test]
    fn equal_datagrams_to_one_peer_form_one_run_and_a_shorter_one_ends_it() {
        let mut b = TxBatch::new(1 << 20, 65_536);
        for _ in 0..3 {
            b.push(&[1; 1_400], 1_400, addr(1), 7);
        }
        b.push(&[2; 300], 300, addr(1), 7);
        // The run ended with a shorter datagram: the next full one starts a new run.
        b.push(&[3; 1_400], 1_400, addr(1), 7);
        let runs = b.runs();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (runs[0].len, runs[0].stride, runs[0].segments()),
            (4_500, 1_400, 4)
        );
        assert_eq!((runs[1].start, runs[1].len), (4_500, 1_400));
        assert_eq!(b.bytes(&runs[0])[4_200..], [2; 300]);
    }

    #[test]
    fn another_peer_or_another_size_starts_a_new_run() {
        let mut b = TxBatch::new(1 << 20, 65_536);
        b.push(&[0; 1_000], 1_000, addr(1), 1);
        b.push(&[0; 1_000], 1_000, addr(2), 2);
        b.push(&[0; 1_200], 1_200, addr(2), 2);
        b.push(&[0; 1_000], 1_000, addr(1), 1);
        let runs: Vec<_> = b.runs().iter().map(|r| (r.to, r.len, r.tag)).collect();
        assert_eq!(
            runs,
            vec![
                (addr(1), 1_000, 1),
                (addr(2), 1_000, 2),
                (addr(2), 1_200, 2),
                (addr(1), 1_000, 1)
            ]
        );
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn runs_stop_at_the_kernels_gso_limits() {
        let mut b = TxBatch::new(1 << 20, 65_536);
        for _ in 0..100 {
            b.push(&[0; 500], 500, addr(1), 0);
        }
        let segs: Vec<_> = b.runs().iter().map(Run::segments).collect();
        assert_eq!(segs, vec![GSO_MAX_SEGMENTS, 100 - GSO_MAX_SEGMENTS]);
        b.clear();
        for _ in 0..60 {
            b.push(&[0; 1_400], 1_400, addr(1), 0);
        }
        assert!(b.runs().iter().all(|r| r.len <= GSO_MAX_BYTES));
        assert_eq!(b.runs()[0].segments(), GSO_MAX_BYTES / 1_400);
        // Datagrams too big to be a GSO segment are never grouped.
        b.clear();
        b.push(&[0; 3_000], 3_000, addr(1), 0);
        b.push(&[0; 3_000], 3_000, addr(1), 0);
        assert_eq!(b.runs().len(), 2);
    }

    #[test]
    fn several_datagrams_committed_at_once_keep_their_stride() {
        let mut b = TxBatch::new(1 << 20, 65_536);
        b.push(&[0; 3_000], 1_400, addr(1), 0); // 1400 + 1400 + 200
        b.push(&[0; 1_400], 1_400, addr(1), 0);
        let runs = b.runs();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].segments(), runs[0].stride), (3, 1_400));
    }

    #[test]
    fn the_batch_is_full_when_less_than_a_window_is_left() {
        let mut b = TxBatch::new(4_000, 2_000);
        assert!(!b.full());
        b.push(&[0; 1_500], 1_500, addr(1), 0);
        b.push(&[0; 1_500], 1_500, addr(1), 0);
        assert!(!b.full());
        b.push(&[0; 1_500], 1_500, addr(1), 0);
        assert!(b.full());
        assert!(b.spare().len() >= 1_500);
    }

    #[test]
    fn socket_addresses_survive_the_round_trip_through_sockaddr() {
        for a in [
            addr(4242),
            "[fe80::1%3]:5000".parse().unwrap(),
            "[2001:db8::7]:1".parse().unwrap(),
        ] {
            let (st, len) = sockaddr(a);
            // SAFETY: sockaddr() wrote `len` bytes.
            assert_eq!(unsafe { socket_addr(&st, len) }, Some(a));
        }
    }

    /// Received datagrams of one `recv_batch`, with their senders (waits up to 1 s for some).
    fn receive(sock: &mut BatchSocket) -> Vec<(Option<SocketAddr>, Vec<u8>)> {
        let mut rx = RxBatch::new(4, 2048);
        let mut c = UdpCounters::default();
        for _ in 0..100 {
            if sock.recv_batch(&mut rx, &mut c).unwrap() > 0 {
                return (0..rx.len())
                    .flat_map(|i| {
                        let (from, d) = rx.datagrams(i);
                        d.map(|d| (from, d.to_vec())).collect::<Vec<_>>()
                    })
                    .collect();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Vec::new()
    }

    #[test]
    fn the_dual_stack_socket_speaks_ipv4_and_ipv6_and_names_ipv4_peers_plainly() {
        let mut sock = BatchSocket::bind_any(0).unwrap();
        let port = sock.sock.local_addr().unwrap().as_socket().unwrap().port();
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        v4.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let v4_addr = v4.local_addr().unwrap();
        sock.send_to(b"to v4", v4_addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = v4.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.port()), (&b"to v4"[..], port));
        v4.send_to(b"from v4", ("127.0.0.1", port)).unwrap();
        assert_eq!(
            receive(&mut sock),
            vec![(Some(v4_addr), b"from v4".to_vec())]
        );
        // IPv6 where the host has it (the loopback's ::1).
        if let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") {
            let v6_addr = v6.local_addr().unwrap();
            sock.send_to(b"to v6", v6_addr).unwrap();
            let (n, _) = v6.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"to v6");
            v6.send_to(b"from v6", ("::1", port)).unwrap();
            assert_eq!(
                receive(&mut sock),
                vec![(Some(v6_addr), b"from v6".to_vec())]
            );
        }
    }
}
