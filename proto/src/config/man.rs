//! The config format's man page, `ipop-config(5)`, written from the table of keys
//! ([`Config::keys`]) and [`IGNORED_KEYS`], so that the page cannot drift from what the parser
//! takes. Plain roff (the `man` macros), no I/O: the caller prints it.

use super::{Config, Support, IGNORED_KEYS};
use serde_json::Value;

/// Text made safe for roff: backslashes escaped, and a line that would start with a control
/// character ('.' or '\'') guarded by a zero-width `\&`.
fn esc(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

/// A default as the page shows it: JSON, with `null` spelled out as "none".
fn shown_default(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        // Spaces between elements, so that a long list can break across lines.
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// The whole page; `version` goes into its footer.
pub fn man_page(version: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH IPOP\\-CONFIG 5 \"\" \"ipop {}\" \"File Formats\"\n",
        esc(version)
    ));
    out.push_str(
        ".SH NAME\nipop\\-config \\- the IPOP gvpn config read by gvpn\\-controller\n\
.SH SYNOPSIS\n/etc/ipop/\\fINET\\fR.json\n\
.SH DESCRIPTION\n\
One JSON object. The keys are those of the original IPOP gvpn controller, under their original \
names and with their original defaults, plus the keys this implementation adds (\\fBpeers\\fR, \
\\fBbridge\\fR, \\fBlink_port\\fR, \\fBtap_mtu\\fR, \\fBkey_file\\fR, ...). \
\\fBgvpn\\-controller \\-c\\fR \\fIFILE\\fR reads it; \\fB\\-s\\fR \\fIJSON\\fR overrides keys \
of the file. A value of the wrong type or out of range is refused with one line naming the \
file, the key, what it takes and what it got. A key that is not known is ignored with a \
warning.\n\
.PP\n\
A config must say \\fB\"switchmode\": 1\\fR: the default, 0 (the original's routed mode), is \
not implemented and is refused.\n\
.PP\n\
The service \\fBipop@\\fINET\\fB.service\\fR reads /etc/ipop/\\fINET\\fR.json; \
\\fBsystemctl reload ipop@\\fINET\\fR (SIGHUP) reads it again: see RELOAD.\n\
.SH KEYS\n",
    );
    for k in Config::keys() {
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR (default: {})\n",
            esc(k.name),
            esc(&shown_default(&k.default))
        ));
        let help: Vec<&str> = k.help.iter().copied().filter(|l| !l.is_empty()).collect();
        out.push_str(&esc(&help.join(" ")));
        out.push('\n');
        out.push_str(&format!(".br\nTakes {}.", esc(&k.expected)));
        match k.support {
            Support::Supported => {}
            Support::Secret => out.push_str(" Never shown in logs."),
            Support::Unsupported(why) => out.push_str(&format!(
                " Accepted for compatibility; a value other than the default is ignored with a \
                 warning ({}).",
                esc(why)
            )),
        }
        if !super::reload_applies(k.name) {
            out.push_str(" A change needs a restart.");
        }
        out.push('\n');
    }
    out.push_str(
        ".SH IGNORED KEYS\nKeys of the original that this implementation has no use for: \
accepted, and ignored with a warning when they hold another value than the original's \
default.\n",
    );
    for (key, default, why) in IGNORED_KEYS {
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR (default: {})\n{}\n",
            esc(key),
            esc(default.unwrap_or("none")),
            esc(why)
        ));
    }
    out.push_str(&format!(
        ".SH RELOAD\nOn SIGHUP gvpn\\-controller reads the file again. A file that no longer \
parses is refused with an error and the running config stays. Otherwise peers added to \
\\fBpeers\\fR are linked, peers removed are trimmed and the MAC and neighbour entries behind \
them withdrawn, a peer whose endpoint or fpr changed is linked again, and {} take effect at \
once. Any other key that changed is named in one log line and keeps its running value until \
the next restart.\n",
        super::RELOADABLE_KEYS
            .iter()
            .map(|k| format!("\\fB{}\\fR", esc(k)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push_str(
        ".SH EXAMPLE\n.nf\n\
{\n\
  \"ip4\": \"10.0.3.1\",\n\
  \"switchmode\": 1,\n\
  \"icc\": true,\n\
  \"bridge\": \"lxcbr0\",\n\
  \"key_file\": \"/etc/ipop/ipop.key\",\n\
  \"peers\": [\n\
    {\"ip4\": \"10.0.3.2\", \"endpoint\": \"192.0.2.2:5900\",\n\
     \"fpr\": \"<the output of ipopctl pubkey on that host>\"}\n\
  ]\n\
}\n\
.fi\n\
.SH FILES\n\
/etc/ipop/config.json.example, a documented example.\n\
.SH SEE ALSO\n\
\\fBgvpn\\-controller\\fR(8), \\fBipop\\-tincan\\fR(8), \\fBipopctl\\fR(8)\n",
    );
    out
}
