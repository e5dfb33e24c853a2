//! The TAP device, opened and driven with the kernel's own interface (`/dev/net/tun`, ioctls,
//! `read`/`writev` on the fd) so that it can carry a virtio-net header: with `IFF_VNET_HDR`
//! every frame read or written is preceded by `struct virtio_net_hdr` (10 bytes), which is
//! how the kernel hands over and takes back checksum-offloaded and TSO frames.

use log::warn;
use proto::offload::{VnetHdr, VNET_HDR_LEN};
use proto::wire::ethernet::{MacAddr, HEADER_LEN as ETH_HEADER};
use std::ffi::c_void;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// How frames cross the TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// Bare Ethernet frames (no `IFF_VNET_HDR`).
    Plain,
    /// Every frame behind a virtio-net header (`IFF_VNET_HDR`).
    Vnet,
}

impl Offload {
    /// What the start-up log says about the path in use.
    pub fn describe(self) -> &'static str {
        match self {
            Offload::Plain => "plain",
            Offload::Vnet => "virtio-net header",
        }
    }
}

pub struct Tap {
    fd: OwnedFd,
    pub name: String,
    pub mac: MacAddr,
    /// The overlay's MTU (the configured `tap_mtu`): what crosses to the peers.
    pub mtu: u16,
    /// The device's MTU: `mtu`, or more once a bridge port with a larger MTU is seen, so that
    /// its larger frames reach tincan (to be answered with ICMP) instead of being dropped by
    /// the bridge in silence.
    pub device_mtu: u16,
    pub offload: Offload,
}

impl Tap {
    /// Creates (or attaches to) TAP `name` with MTU `mtu`, up and nonblocking. With
    /// `Offload::Vnet` it asks for `IFF_VNET_HDR` and falls back to the plain path, with a
    /// warning, when the kernel refuses it.
    pub fn open(name: &str, mtu: u16, want: Offload) -> io::Result<Tap> {
        let (fd, offload) = match want {
            Offload::Vnet => match create(name, Offload::Vnet) {
                Ok(fd) => (fd, Offload::Vnet),
                Err(e) => {
                    warn!("TAP {name}: the kernel refuses a virtio-net header ({e}): falling back to the plain path");
                    (create(name, Offload::Plain)?, Offload::Plain)
                }
            },
            Offload::Plain => (create(name, Offload::Plain)?, Offload::Plain),
        };
        let name = if_name(&fd)?;
        let mut tap = Tap {
            fd,
            name,
            mac: MacAddr::ZERO,
            mtu,
            device_mtu: mtu,
            offload,
        };
        tap.set_mtu(mtu)?;
        let ctl = ctl_socket()?;
        let mut req = ifreq(&tap.name);
        ioctl(&ctl, libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        ioctl(&ctl, libc::SIOCSIFFLAGS, &mut req)?;
        let mut req = ifreq(&tap.name);
        if ioctl(&ctl, libc::SIOCGIFHWADDR, &mut req).is_ok() {
            // SAFETY: SIOCGIFHWADDR filled in the hardware-address member of the union.
            let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
            let b: [u8; 6] = std::array::from_fn(|i| sa.sa_data[i] as u8);
            tap.mac = MacAddr(b);
        }
        Ok(tap)
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Bytes in front of every frame on this TAP (the virtio-net header, or none).
    pub fn hdr_len(&self) -> usize {
        match self.offload {
            Offload::Plain => 0,
            Offload::Vnet => VNET_HDR_LEN,
        }
    }

    /// Largest frame the TAP hands over (TSO super-frames aside): its device MTU plus the
    /// Ethernet header and up to two VLAN tags (802.1Q, 802.1ad).
    pub fn max_frame(&self) -> usize {
        self.device_mtu as usize + ETH_HEADER + 8
    }

    /// Largest frame of the overlay (what peers may send): its MTU plus the Ethernet header
    /// and up to two VLAN tags.
    pub fn max_overlay_frame(&self) -> usize {
        self.mtu as usize + ETH_HEADER + 8
    }

    /// Sets the overlay's MTU, and the device's to the same.
    pub fn set_mtu(&mut self, mtu: u16) -> io::Result<()> {
        self.set_device_mtu(mtu)?;
        self.mtu = mtu;
        Ok(())
    }

    /// Sets the device's MTU only (the overlay's stays).
    pub fn set_device_mtu(&mut self, mtu: u16) -> io::Result<()> {
        let mut req = ifreq(&self.name);
        req.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
        ioctl(&ctl_socket()?, libc::SIOCSIFMTU, &mut req)?;
        self.device_mtu = mtu;
        Ok(())
    }

    /// Lets the kernel hand over checksum-offloaded and TSO (IPv4, IPv6) frames, and take them
    /// back. Only with a virtio-net header.
    pub fn enable_tso(&mut self) -> io::Result<()> {
        if self.offload != Offload::Vnet {
            return Err(io::Error::other("TSO needs the virtio-net header"));
        }
        set_offload(
            &self.fd,
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6,
        )
    }

    /// Reads one frame so that it sits at `buf[at..at + n]` (the virtio-net header, if any,
    /// just before it, so `at` must be at least `VNET_HDR_LEN`); returns `n` and the header.
    pub fn recv(&self, buf: &mut [u8], at: usize) -> io::Result<(usize, VnetHdr)> {
        let start = at - self.hdr_len();
        let window = &mut buf[start..];
        // SAFETY: reads at most window.len() bytes into the window.
        let n = unsafe { libc::read(self.fd(), window.as_mut_ptr().cast(), window.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        match self.offload {
            Offload::Plain => Ok((n, VnetHdr::default())),
            Offload::Vnet if n < VNET_HDR_LEN => Err(io::Error::other("short read from TAP")),
            Offload::Vnet => {
                // The header is little-endian on the hosts this runs on (x86, arm64).
                let h = VnetHdr::parse(&window[..VNET_HDR_LEN]).map_err(io::Error::other)?;
                Ok((n - VNET_HDR_LEN, h))
            }
        }
    }

    /// Writes `[virtio-net header][frame]` as it is (a coalesced super-frame, or a frame whose
    /// checksum the kernel finishes). Only with a virtio-net header.
    pub fn send_raw(&self, hdr_and_frame: &[u8]) -> io::Result<usize> {
        if self.offload != Offload::Vnet {
            return Err(io::Error::other("no virtio-net header on this TAP"));
        }
        // SAFETY: writes at most hdr_and_frame.len() bytes from a live buffer.
        let n = unsafe {
            libc::write(
                self.fd(),
                hdr_and_frame.as_ptr().cast(),
                hdr_and_frame.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Writes one complete frame (checksums done, no segmentation).
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        let hdr = [0u8; VNET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut c_void,
                iov_len: self.hdr_len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs point at live buffers of the given lengths.
        let n = unsafe { libc::writev(self.fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize).saturating_sub(self.hdr_len()))
    }
}

fn create(name: &str, mode: Offload) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/net/tun: {e}")))?;
    let fd = OwnedFd::from(file);
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if mode == Offload::Vnet {
        flags |= libc::IFF_VNET_HDR;
    }
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    ioctl(&fd, libc::TUNSETIFF, &mut req).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot create TAP {name:?} (needs root and /dev/net/tun): {e}"),
        )
    })?;
    if mode == Offload::Vnet {
        let mut len = VNET_HDR_LEN as libc::c_int;
        ioctl(&fd, libc::TUNSETVNETHDRSZ, &mut len)?;
        // Complete frames until the data plane asks for TSO (`enable_tso`).
        set_offload(&fd, 0)?;
    }
    Ok(fd)
}

fn set_offload(fd: &OwnedFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The name the kernel gave the TAP (`name` may have been a pattern like `tap%d`).
fn if_name(fd: &OwnedFd) -> io::Result<String> {
    let mut req = ifreq("");
    ioctl(fd, libc::TUNGETIFF, &mut req)?;
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    req
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl<T>(fd: &OwnedFd, req: libc::Ioctl, arg: &mut T) -> io::Result<()> {
    // SAFETY: every caller passes the argument type its request expects.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
