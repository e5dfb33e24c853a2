//! The bound on one stanza from the XMPP server, as a pure state machine: [`StanzaMeter`]
//! follows the XML nesting of the stream just enough to know where a stanza (a child of
//! `<stream:stream>`) ends, and says when one grows over its limit. The controller meters the
//! server's bytes with it before they reach the XML parser, which builds each stanza in memory
//! whatever its size.

/// The most bytes of one stanza (its open tag to its close tag), or between two stanzas.
pub const MAX_STANZA: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Character data.
    Text,
    /// Just after `<`.
    Lt,
    /// In an open tag; `slash`: the last byte was `/`.
    Open { slash: bool },
    /// In a quoted attribute value of an open tag.
    Quote(u8),
    /// In a close tag.
    Close,
    /// In `<?...>` or `<!...>` (not CDATA): no nesting change.
    Other,
    /// After `<!`, matched this much of `[CDATA[`.
    Bang(u8),
    /// In a CDATA section, matched this much of `]]>`.
    CData(u8),
}

/// Follows the nesting of an XMPP stream and counts the bytes of the current stanza.
#[derive(Debug)]
pub struct StanzaMeter {
    depth: u32,
    state: St,
    /// The open tag's name so far (enough of it to recognise `stream:stream`).
    name: [u8; 16],
    /// Bytes of `name` used; `name.len() + 1` for a longer name.
    name_len: usize,
    name_done: bool,
    /// Bytes since the last stanza ended.
    since: usize,
    limit: usize,
}

/// A stanza went over the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig;

impl StanzaMeter {
    pub fn new(limit: usize) -> StanzaMeter {
        StanzaMeter {
            depth: 0,
            state: St::Text,
            name: [0; 16],
            name_len: 0,
            name_done: false,
            since: 0,
            limit,
        }
    }

    fn is_stream_header(&self) -> bool {
        let Some(name) = self.name.get(..self.name_len) else {
            return false;
        };
        name == b"stream" || name.ends_with(b":stream")
    }

    /// A tag closed: at stream level, the stanza is complete.
    fn closed_at(&mut self, depth: u32) {
        if depth <= 1 {
            self.since = 0;
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), TooBig> {
        const CDATA: &[u8] = b"[CDATA[";
        for &b in bytes {
            self.since += 1;
            self.state = match self.state {
                St::Text if b == b'<' => St::Lt,
                St::Text => {
                    if self.depth <= 1 {
                        // White space between stanzas (keepalives) is not a stanza.
                        self.since = 0;
                    }
                    St::Text
                }
                St::Lt => match b {
                    b'/' => St::Close,
                    b'?' => St::Other,
                    b'!' => St::Bang(0),
                    _ => {
                        self.name_len = 0;
                        self.name_done = false;
                        self.push_name(b);
                        St::Open { slash: false }
                    }
                },
                St::Open { .. } if b == b'"' || b == b'\'' => St::Quote(b),
                St::Open { slash } if b == b'>' => {
                    if slash {
                        self.closed_at(self.depth);
                    } else if self.is_stream_header() {
                        // A stream (also the one restarted after STARTTLS or SASL): its
                        // children are the stanzas.
                        self.depth = 1;
                        self.since = 0;
                    } else {
                        self.depth = self.depth.saturating_add(1);
                    }
                    St::Text
                }
                St::Open { .. } => {
                    self.push_name(b);
                    St::Open { slash: b == b'/' }
                }
                St::Quote(q) if b == q => St::Open { slash: false },
                St::Quote(q) => St::Quote(q),
                St::Close if b == b'>' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.closed_at(self.depth);
                    St::Text
                }
                St::Close => St::Close,
                St::Other if b == b'>' => St::Text,
                St::Other => St::Other,
                St::Bang(n) if b == CDATA[n as usize] => {
                    if n as usize + 1 == CDATA.len() {
                        St::CData(0)
                    } else {
                        St::Bang(n + 1)
                    }
                }
                St::Bang(_) if b == b'>' => St::Text,
                St::Bang(_) => St::Other,
                St::CData(2) if b == b'>' => St::Text,
                St::CData(n) if b == b']' => St::CData((n + 1).min(2)),
                St::CData(_) => St::CData(0),
            };
            if self.since > self.limit {
                return Err(TooBig);
            }
        }
        Ok(())
    }

    /// Keeps an open tag's name, up to white space or `/` (a longer name than the buffer is
    /// none we look for).
    fn push_name(&mut self, b: u8) {
        if self.name_done {
            return;
        }
        if b.is_ascii_whitespace() || b == b'/' {
            self.name_done = true;
        } else if self.name_len < self.name.len() {
            self.name[self.name_len] = b;
            self.name_len += 1;
        } else {
            self.name_len = self.name.len() + 1;
            self.name_done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                          xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>";

    fn iq(body_len: usize) -> String {
        format!(
            "<iq type='get' from='a@b/tincan1' id='1'><query xmlns='jabber:iq:tincan'>\
             <data>{}</data><type>con_req</type></query></iq>",
            "x".repeat(body_len)
        )
    }

    #[test]
    fn many_small_stanzas_and_keepalives_pass_one_big_stanza_does_not() {
        let mut m = StanzaMeter::new(4096);
        m.feed(HEADER.as_bytes()).unwrap();
        // Far more than the bound in total, in stanzas well under it, fed byte by byte and
        // in chunks, with white-space keepalives and self-closing stanzas between them.
        for i in 0..200 {
            let chunk = format!("{} <presence from='a@b/c' type='unavailable'/>\n", iq(3000));
            if i % 2 == 0 {
                m.feed(chunk.as_bytes()).unwrap();
            } else {
                for b in chunk.as_bytes() {
                    m.feed(&[*b]).unwrap();
                }
            }
        }
        for _ in 0..10_000 {
            m.feed(b" ").unwrap();
        }
        assert_eq!(m.feed(iq(5000).as_bytes()), Err(TooBig));
    }

    #[test]
    fn the_restarted_stream_tricky_attributes_and_cdata_are_followed() {
        let mut m = StanzaMeter::new(4096);
        // STARTTLS/SASL restart: a second header without closing the first.
        m.feed(HEADER.as_bytes()).unwrap();
        m.feed(b"<stream:features><mechanisms/></stream:features>")
            .unwrap();
        m.feed(HEADER.as_bytes()).unwrap();
        for _ in 0..5 {
            m.feed(iq(3000).as_bytes()).unwrap();
        }
        // '>' and '/>' inside attribute values do not end the tag.
        let attrs = format!(
            "<message to='a>b' x=\"/>\"><body>{}</body></message>",
            "y".repeat(3000)
        );
        m.feed(attrs.as_bytes()).unwrap();
        m.feed(attrs.as_bytes()).unwrap();
        // A close tag inside CDATA does not end the stanza.
        let mut m2 = StanzaMeter::new(4096);
        m2.feed(HEADER.as_bytes()).unwrap();
        let mut cdata = String::from("<iq><![CDATA[");
        for _ in 0..500 {
            cdata.push_str("</iq>]]<x>");
        }
        cdata.push_str("]]></iq>");
        assert_eq!(m2.feed(cdata.as_bytes()), Err(TooBig));
    }
}
