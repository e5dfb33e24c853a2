//! The control side of the node: the JSON-RPC methods the controller (and `--rpc`) call, and
//! the state report.

use super::*;

impl Node {
    pub(super) fn drain_ctrl(&mut self) -> bool {
        for _ in 0..BATCH {
            let (n, from) = match self.ctrl.recv_from(&mut self.ctrl_buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ECONNREFUSED from a notification to a controller that is gone.
                Err(_) => continue,
            };
            if !from.ip().is_loopback() {
                self.counters.ctrl_foreign_source += 1;
                continue;
            }
            if Some(from) == self.cb {
                self.controller_heard = Some(self.now());
                if !self.controller_alive {
                    self.controller_alive = true;
                    info!("controller at {from} is answering: ARP goes to it");
                }
            }
            let datagram = self.ctrl_buf[..n].to_vec();
            if let Some(reply) = self.handle_ctrl(&datagram, from) {
                let _ = self.ctrl.send_to(&reply, from);
            }
        }
        true
    }

    fn handle_ctrl(&mut self, datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        match rpc::parse(datagram) {
            Incoming::Call { id, method, params } => {
                let result = self.call(&method, &ParamReader(&params), from);
                if let Err(e) = &result {
                    debug!("rpc {method} from {from}: {}", e.message);
                    self.counters.ctrl_bad_request += 1;
                }
                id.map(|id| rpc::response(id, result))
            }
            Incoming::Response { .. } => None,
            Incoming::Invalid { id, error } => {
                self.counters.ctrl_bad_request += 1;
                id.map(|id| rpc::response(id, Err(error)))
            }
        }
    }

    fn call(&mut self, method: &str, p: &ParamReader, from: SocketAddr) -> Result<Value, RpcError> {
        let now = self.now();
        match method {
            "echo_request" => Ok(json!({"type": "echo_reply", "msg": p.0.get("msg")})),
            "set_logging" => {
                let level = p.u64_in("logging", 0, 3)?;
                // An operator's RUST_LOG wins over the config.
                if std::env::var_os("RUST_LOG").is_none() {
                    log::set_max_level(match level {
                        0 => log::LevelFilter::Off,
                        1 => log::LevelFilter::Warn,
                        2 => log::LevelFilter::Info,
                        _ => log::LevelFilter::Debug,
                    });
                }
                Ok(json!(true))
            }
            "set_cb_endpoint" => {
                let ip = p.str("ip")?;
                let port = p.u64_in("port", 1, 65535)? as u16;
                // "::" meant "the sender's address" in the original.
                let ip: std::net::IpAddr = if ip == "::" || ip.is_empty() {
                    from.ip()
                } else {
                    ip.parse().map_err(|_| {
                        RpcError::invalid_params(format!(
                            "\"ip\": expected an IP address, got {ip:?}"
                        ))
                    })?
                };
                if !ip.is_loopback() {
                    return Err(RpcError::invalid_params(format!(
                        "\"ip\": expected a loopback address, got {ip}"
                    )));
                }
                let cb = SocketAddr::new(ip, port);
                if self.cb != Some(cb) {
                    info!("controller callback endpoint is {cb}");
                }
                self.cb = Some(cb);
                self.controller_heard = Some(now);
                Ok(json!(true))
            }
            "set_local_ip" => self.set_local_ip(p),
            "set_switchmode" => {
                let mode = p.u64_in("switchmode", 0, 1)?;
                if mode != 1 {
                    return Err(RpcError::invalid_params(
                        "\"switchmode\": 0 (routed GroupVPN mode) is not implemented; use 1",
                    ));
                }
                self.switchmode = mode;
                if let Some(icc) = p.opt_bool("icc")? {
                    self.set_icc(icc);
                }
                Ok(json!(true))
            }
            "create_link" => self.create_link(p),
            "set_nat" => self.set_nat(p),
            "trim_link" => {
                let uid = p.uid("uid")?;
                let Some(slot) = self.by_uid.remove(&uid) else {
                    return Err(RpcError::invalid_params(format!(
                        "\"uid\": no link to {}",
                        hex::encode(uid)
                    )));
                };
                if let Some(k) = self.links[slot].take().and_then(|l| l.fpr) {
                    self.by_key.remove(&k);
                }
                let removed = self.switch.macs.remove_port(slot);
                info!(
                    "link to {} trimmed; {removed} MAC entries withdrawn",
                    hex::encode(uid)
                );
                Ok(json!(true))
            }
            "set_mac" => {
                let mac: MacAddr = p
                    .str("mac")?
                    .parse()
                    .map_err(|e: String| RpcError::invalid_params(format!("\"mac\": {e}")))?;
                let uid = p.uid("uid")?;
                let Some(&slot) = self.by_uid.get(&uid) else {
                    return Err(RpcError::invalid_params(format!(
                        "\"uid\": no link to {}",
                        hex::encode(uid)
                    )));
                };
                match self.switch.macs.learn(mac, slot, now) {
                    proto::mactable::Learned::Refused => Err(RpcError::invalid_params(format!(
                        "\"mac\": {mac} not accepted (group address, or table full)"
                    ))),
                    _ => Ok(json!(true)),
                }
            }
            "inject_frame" => {
                let frame = hex::decode(p.str("frame")?).map_err(|_| {
                    RpcError::invalid_params("\"frame\": expected an even number of hex digits")
                })?;
                if frame.len() < ETH_HEADER || frame.len() > self.mtu as usize + ETH_HEADER {
                    self.counters.drop_oversize += 1;
                    return Err(RpcError::invalid_params(format!(
                        "\"frame\": expected {ETH_HEADER}-{} bytes, got {}",
                        self.mtu as usize + ETH_HEADER,
                        frame.len()
                    )));
                }
                match self.tap.send(&frame) {
                    Ok(_) => {
                        self.counters.injected_frames += 1;
                        Ok(json!(true))
                    }
                    Err(e) => {
                        self.counters.tap_write_errors += 1;
                        Err(RpcError {
                            code: proto::rpc::ErrorCode::ServerError(1),
                            message: format!("TAP write failed: {e}"),
                            data: None,
                        })
                    }
                }
            }
            "send_icc" => {
                let uid = p.uid("uid")?;
                let msg = p.value("msg")?;
                let payload = serde_json::to_vec(msg).expect("JSON serialises");
                if payload.len() + DATA_HEADER_LEN > self.mtu as usize + ETH_HEADER {
                    return Err(RpcError::invalid_params(format!(
                        "\"msg\": {} bytes, more than a link datagram carries",
                        payload.len()
                    )));
                }
                let Some(&slot) = self.by_uid.get(&uid) else {
                    return Err(RpcError::invalid_params(format!(
                        "\"uid\": no link to {}",
                        hex::encode(uid)
                    )));
                };
                if self.send_control_msg(slot, linkwire::TYPE_ICC, &payload, now) {
                    self.counters.icc_tx += 1;
                    if let Some(Some(l)) = self.links.get_mut(slot) {
                        l.s.counters.icc_tx += 1;
                    }
                    Ok(json!(true))
                } else {
                    Err(RpcError {
                        code: proto::rpc::ErrorCode::ServerError(2),
                        message: format!("link to {} is not up", hex::encode(uid)),
                        data: None,
                    })
                }
            }
            "get_state" => Ok(self.state_json(now)),
            _ => Err(RpcError::method_not_found()),
        }
    }

    fn set_icc(&mut self, icc: bool) {
        if self.switch.punt_arp != icc {
            info!(
                "ARP {}",
                if icc {
                    "goes to the controller (icc on)"
                } else {
                    "is flooded like any broadcast (icc off)"
                }
            );
        }
        self.switch.punt_arp = icc;
    }

    fn set_local_ip(&mut self, p: &ParamReader) -> Result<Value, RpcError> {
        let uid = p.uid("uid")?;
        let ip4: Ipv4Addr = p.str("ip4")?.parse().map_err(|_| {
            RpcError::invalid_params(format!(
                "\"ip4\": expected an IPv4 address, got {:?}",
                p.0.get("ip4")
            ))
        })?;
        if let Some(mode) = p.opt_u64_in("switchmode", 0, 1)? {
            if mode != 1 {
                return Err(RpcError::invalid_params(
                    "\"switchmode\": 0 (routed GroupVPN mode) is not implemented; use 1",
                ));
            }
        }
        let link_port = p.opt_u64_in("link_port", 1, 65535)?.unwrap_or(5900) as u16;
        let mtu = p.opt_u64_in("mtu", 576, 9000)?.map(|m| m as u16);
        let sec = p.opt_bool("sec")?.unwrap_or(true);
        let rekey_after = p.opt_u64_in("rekey_after_secs", 1, 86_400)?.unwrap_or(120) * 1000;
        let key = match p.opt_str("key_file")? {
            Some(path) => {
                let path = std::path::Path::new(path);
                if !path.is_absolute() {
                    return Err(RpcError::invalid_params(format!(
                        "\"key_file\": expected an absolute path, got {}",
                        path.display()
                    )));
                }
                let (key, created) = keys::load_or_create(path).map_err(|e| RpcError {
                    code: proto::rpc::ErrorCode::ServerError(5),
                    message: e,
                    data: None,
                })?;
                if created {
                    info!("generated key file {}", path.display());
                }
                Some(key)
            }
            None if sec => {
                return Err(RpcError::invalid_params(
                    "\"key_file\": required while \"sec\" is true",
                ))
            }
            None => None,
        };
        if let Some(icc) = p.opt_bool("icc")? {
            self.set_icc(icc);
        }
        if let Some(local) = &self.local {
            if local.uid != uid && !self.links.iter().all(Option::is_none) {
                return Err(RpcError::invalid_params(
                    "\"uid\": differs from the uid in use; trim the links or restart tincan first",
                ));
            }
        }
        let rebind =
            self.local.as_ref().map(|l| l.link_port) != Some(link_port) || self.link_sock.is_none();
        if rebind {
            let mut sock = bind_link_socket(link_port).map_err(|e| RpcError {
                code: proto::rpc::ErrorCode::ServerError(3),
                message: format!("cannot bind link port 0.0.0.0:{link_port}: {e}"),
                data: None,
            })?;
            if let Some(mut old) = self.link_sock.take() {
                let _ = self.poll.registry().deregister(&mut old);
            }
            self.poll
                .registry()
                .register(&mut sock, LINK, Interest::READABLE)
                .map_err(|e| RpcError::invalid_params(e.to_string()))?;
            self.link_sock = Some(sock);
            info!("links on UDP 0.0.0.0:{link_port}");
        }
        if let Some(mtu) = mtu {
            if mtu != self.mtu {
                self.tap.set_mtu(mtu).map_err(|e| RpcError {
                    code: proto::rpc::ErrorCode::ServerError(4),
                    message: format!("cannot set TAP MTU {mtu}: {e}"),
                    data: None,
                })?;
                self.mtu = mtu;
                info!("TAP {} mtu {mtu}", self.tap_name);
            }
        }
        if self.local.as_ref().map(|l| l.uid) != Some(uid) {
            info!("local uid {} (ip4 {ip4})", hex::encode(uid));
        }
        let key_changed =
            key.as_ref().map(|k| *k.public()) != self.key.as_ref().map(|k| *k.public());
        if sec != self.sec || key_changed {
            if sec {
                info!(
                    "links are encrypted (Noise IK, ChaCha20-Poly1305); fingerprint {}",
                    key.as_ref().map(StaticKey::fingerprint).unwrap_or_default()
                );
            } else {
                warn!("\"sec\": false: links are PLAINTEXT, unauthenticated and readable on the underlay; use only on a trusted network");
            }
            self.sec = sec;
            self.key = key;
            // Sessions of the old mode or key are void; links start over.
            for slot in 0..self.links.len() {
                if let Some(link) = self.links[slot].as_mut() {
                    link.secure = if sec {
                        link.fpr.map(SecureLink::new)
                    } else {
                        None
                    };
                }
            }
        }
        self.rekey_after = rekey_after;
        self.local = Some(Local {
            uid,
            ip4,
            link_port,
        });
        Ok(json!(true))
    }

    /// STUN and TURN servers, and interfaces whose addresses are never candidates.
    fn set_nat(&mut self, p: &ParamReader) -> Result<Value, RpcError> {
        use std::net::ToSocketAddrs;
        let resolve = |key: &str, s: &str| -> Result<SocketAddr, RpcError> {
            s.to_socket_addrs()
                .ok()
                .and_then(|mut a| a.find(SocketAddr::is_ipv4))
                .ok_or_else(|| {
                    RpcError::invalid_params(format!(
                        "\"{key}\": expected a reachable host:port, got {s:?}"
                    ))
                })
        };
        let strings = |key: &str| -> Result<Vec<&str>, RpcError> {
            match p.0.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        RpcError::invalid_params(format!("\"{key}\": expected a list of strings"))
                    }),
                Some(v) => Err(RpcError::invalid_params(format!(
                    "\"{key}\": expected a list, got {v}"
                ))),
            }
        };
        let stun = strings("stun")?
            .into_iter()
            .map(|s| resolve("stun", s))
            .collect::<Result<Vec<_>, _>>()?;
        let turn = match p.0.get("turn") {
            None | Some(Value::Null) => None,
            Some(Value::Object(t)) => {
                let t = ParamReader(t);
                Some(nat::TurnServerConfig {
                    server: resolve("turn.server", t.str("server")?)?,
                    user: t.str("user")?.to_string(),
                    pass: t.str("pass")?.to_string(),
                })
            }
            Some(v) => {
                return Err(RpcError::invalid_params(format!(
                    "\"turn\": expected {{\"server\", \"user\", \"pass\"}}, got {v}"
                )))
            }
        };
        self.ignore_ifs = strings("ignore")?.into_iter().map(str::to_string).collect();
        self.nat.configure(stun, turn);
        Ok(json!(true))
    }

    /// This node's candidates: host addresses (not the TAP, not the bridge it is a port of,
    /// not ignored interfaces), the STUN-reflexive address, the TURN relay.
    fn candidates(&self) -> Vec<String> {
        let Some(port) = self.local.as_ref().map(|l| l.link_port) else {
            return Vec::new();
        };
        let mut ignore = self.ignore_ifs.clone();
        ignore.push(self.tap_name.clone());
        if let Ok(m) = std::fs::read_link(format!("/sys/class/net/{}/master", self.tap_name)) {
            if let Some(b) = m.file_name() {
                ignore.push(b.to_string_lossy().into_owned());
            }
        }
        let mut out: Vec<String> = nat::host_addresses(&ignore)
            .into_iter()
            .map(|ip| nat::Candidate::Host(SocketAddr::new(ip, port)).to_text())
            .collect();
        if let Some(a) = self.nat.srflx() {
            out.push(nat::Candidate::Srflx(a).to_text());
        }
        if let Some(a) = self.nat.relayed() {
            out.push(nat::Candidate::Relay(a).to_text());
        }
        out
    }

    fn create_link(&mut self, p: &ParamReader) -> Result<Value, RpcError> {
        const MAX_CANDIDATES: usize = 8;
        let uid = p.uid("uid")?;
        let candidates: Vec<nat::Candidate> = match p.0.get("candidates") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|c| c.as_str().and_then(nat::Candidate::parse).ok_or(c))
                .collect::<Result<_, _>>()
                .map_err(|c| {
                    RpcError::invalid_params(format!(
                        "\"candidates\": expected strings like \"host:1.2.3.4:5900\", got {c}"
                    ))
                })?,
            Some(v) => {
                return Err(RpcError::invalid_params(format!(
                    "\"candidates\": expected a list, got {v}"
                )))
            }
        };
        // A peer's offer is input from the network: a bounded list of usable addresses (an
        // offer with thousands would turn our handshakes into a reflection flood).
        let mut candidates: Vec<nat::Candidate> = candidates
            .into_iter()
            .filter(|c| {
                let ip = c.addr().ip();
                !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback())
                    && c.addr().port() != 0
            })
            .collect();
        candidates.dedup();
        candidates.truncate(MAX_CANDIDATES);
        let endpoint: SocketAddr = match p.opt_str("endpoint")? {
            Some(ep_text) => ep_text.parse().map_err(|_| {
                RpcError::invalid_params(format!("\"endpoint\": expected ip:port, got {ep_text:?}"))
            })?,
            None => candidates.first().map(|c| c.addr()).ok_or_else(|| {
                RpcError::invalid_params("\"endpoint\" or \"candidates\": one is required")
            })?,
        };
        if let Some(local) = &self.local {
            if local.uid == uid {
                return Err(RpcError::invalid_params(
                    "\"uid\": that is this node's own uid",
                ));
            }
        }
        let fpr = match p.opt_str("fpr")? {
            None | Some("") => None,
            Some(f) => Some(secure::parse_fingerprint(f).ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "\"fpr\": expected a key fingerprint of 64 hex digits, got {f:?}"
                ))
            })?),
        };
        if self.sec && fpr.is_none() {
            return Err(RpcError::invalid_params(
                "\"fpr\": required while links are encrypted (\"sec\" is true)",
            ));
        }
        if let Some(&slot) = self.by_uid.get(&uid) {
            let link = self.links[slot].as_mut().expect("live");
            if link.s.endpoint != endpoint && !link.s.is_up() {
                link.s.endpoint = endpoint;
            }
            if !candidates.is_empty() {
                link.candidates = candidates;
            }
            if link.fpr != fpr {
                if let Some(k) = fpr {
                    if self.by_key.get(&k).is_some_and(|&s| s != slot) {
                        return Err(RpcError::invalid_params(
                            "\"fpr\": that key is already pinned for another link",
                        ));
                    }
                }
                if link.s.is_up() && link.fpr.is_some() {
                    return Err(RpcError::invalid_params(
                        "\"fpr\": the link is up with another key; trim it first",
                    ));
                }
                // A new pinned key: sessions with the old one are void.
                if let Some(old) = link.fpr {
                    self.by_key.remove(&old);
                }
                link.fpr = fpr;
                link.secure = if self.sec {
                    fpr.map(SecureLink::new)
                } else {
                    None
                };
                if let Some(k) = fpr {
                    self.by_key.insert(k, slot);
                }
            }
            return Ok(json!(true));
        }
        if let Some(k) = fpr {
            if self.by_key.contains_key(&k) {
                return Err(RpcError::invalid_params(
                    "\"fpr\": that key is already pinned for another link",
                ));
            }
        }
        let slot = match self.links.iter().position(Option::is_none) {
            Some(s) => s,
            None if self.links.len() < MAX_LINKS => {
                self.links.push(None);
                self.links.len() - 1
            }
            None => {
                return Err(RpcError::invalid_params(format!(
                    "too many links (max {MAX_LINKS})"
                )))
            }
        };
        // The high half tells this slot's links apart across restarts and reuse.
        let generation = (self.boot_id as u32 ^ (self.now() as u32)).wrapping_shl(16);
        let local_idx = generation | slot as u32;
        self.links[slot] = Some(Link {
            s: LinkSession::new(uid, endpoint, local_idx),
            secure: if self.sec {
                fpr.map(SecureLink::new)
            } else {
                None
            },
            fpr,
            candidates,
            via_relay: false,
            rtt_ms: None,
            hs_sent_at: None,
            last_direct_probe: 0,
        });
        self.by_uid.insert(uid, slot);
        if let Some(k) = fpr {
            self.by_key.insert(k, slot);
        }
        info!("link to {} at {endpoint} created", hex::encode(uid));
        let now = self.now();
        self.send_hello(slot, now);
        Ok(json!(true))
    }

    fn state_json(&self, now: u64) -> Value {
        let peers: Vec<Value> = self
            .links
            .iter()
            .flatten()
            .map(|link| {
                let l = &link.s;
                json!({
                    "type": "peer_state",
                    "uid": hex::encode(l.peer_uid),
                    "status": if l.is_up() { "online" } else { "offline" },
                    "endpoint": l.endpoint.to_string(),
                    "security": if link.secure.is_some() { "noise" } else { "none" },
                    "path": path_of(link),
                    "rtt_ms": link.rtt_ms,
                    "candidates": link.candidates.iter().map(|c| c.to_text()).collect::<Vec<_>>(),
                    "fpr": link.fpr.map(hex::encode),
                    "handshakes": link.secure.as_ref().map(|s| s.handshakes_completed),
                    "last_rx_ms": l.last_rx.map(|t| now.saturating_sub(t)),
                    "tx_frames": l.counters.tx_frames,
                    "tx_bytes": l.counters.tx_bytes,
                    "rx_frames": l.counters.rx_frames,
                    "rx_bytes": l.counters.rx_bytes,
                    "icc_tx": l.counters.icc_tx,
                    "icc_rx": l.counters.icc_rx,
                    "tx_errors": l.counters.tx_errors,
                    "ups": l.counters.ups,
                    "downs": l.counters.downs,
                })
            })
            .collect();
        let macs: Vec<Value> = self
            .switch
            .macs
            .iter()
            .filter_map(|(mac, e)| {
                let link = self.links.get(e.port)?.as_ref()?;
                Some(json!({
                    "mac": mac.to_string(),
                    "uid": hex::encode(link.s.peer_uid),
                    "age_ms": now.saturating_sub(e.updated),
                }))
            })
            .collect();
        let mut counters = serde_json::to_value(&self.counters).expect("counters serialise");
        let sc = &self.switch.counters;
        counters["mac_new"] = json!(sc.mac_new);
        counters["mac_moves"] = json!(sc.mac_moved);
        counters["mac_refused"] = json!(sc.mac_refused);
        json!({
            "type": "local_state",
            "_uid": self.local.as_ref().map(|l| hex::encode(l.uid)).unwrap_or_default(),
            "_ip4": self.local.as_ref().map(|l| l.ip4.to_string()).unwrap_or_default(),
            "_fpr": self.key.as_ref().map(StaticKey::fingerprint).unwrap_or_default(),
            "sec": self.sec,
            "candidates": self.candidates(),
            "nat": {
                "srflx": self.nat.srflx().map(|a| a.to_string()),
                "relay": self.nat.relayed().map(|a| a.to_string()),
                "turn_server": self.nat.turn_server().map(|a| a.to_string()),
                "mapping": self.nat.mapping_behaviour(),
                "stun_responses": self.nat.stun_responses,
                "relayed_in": self.nat.relayed_in,
                "relayed_out": self.nat.relayed_out,
            },
            "rekey_after_secs": self.rekey_after / 1000,
            "_mac": self.tap_mac.to_string(),
            "tap": self.tap_name,
            "mtu": self.mtu,
            "version": crate::VERSION,
            "boot_id": self.boot_id,
            "uptime_ms": now,
            "configured": self.local.is_some(),
            "switchmode": self.switchmode,
            "icc": self.switch.punt_arp,
            "controller_alive": self.controller_alive,
            "link_port": self.local.as_ref().map(|l| l.link_port),
            "counters": counters,
            "peers": peers,
            "macs": macs,
        })
    }
}

pub(super) fn bind_link_socket(port: u16) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Bursts from the TAP arrive faster than one wake-up drains them; deep buffers absorb
    // them instead of dropping.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    Ok(UdpSocket::from_std(s.into()))
}

/// How a link reaches its peer: "relayed" (through a TURN relay, ours or the peer's),
/// "direct" (a host address of the peer), "reflexive" (its NAT's public address), or
/// "static" (a configured endpoint without candidates).
fn path_of(link: &Link) -> &'static str {
    let ep = link.s.endpoint;
    if link.via_relay {
        return "relayed";
    }
    match link.candidates.iter().find(|c| c.addr() == ep) {
        Some(nat::Candidate::Relay(_)) => "relayed",
        Some(nat::Candidate::Host(_)) => "direct",
        Some(nat::Candidate::Srflx(_)) => "reflexive",
        None if link.candidates.is_empty() => "static",
        None => "reflexive",
    }
}
