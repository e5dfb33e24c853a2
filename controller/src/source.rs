//! Where the config comes from: the `-c FILE` text under the `-s JSON` overrides, read at start
//! and again on SIGHUP. The file is read here (the parser in `proto` does no I/O).

use proto::config::{Config, ConfigError, OVERRIDE_SOURCE};
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `-c FILE`
    pub file: Option<PathBuf>,
    /// `-s JSON`: its keys override the file's.
    pub overrides: Option<String>,
}

impl ConfigSource {
    /// Reads the file and parses both layers: the config and its warning lines, or one line
    /// saying what is wrong.
    pub fn load(&self) -> Result<(Config, Vec<String>), ConfigError> {
        let file = match &self.file {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::unreadable(&name, &e))?;
                Some((text, name))
            }
            None => None,
        };
        let layers: Vec<(&str, &str)> = file
            .iter()
            .map(|(text, name)| (text.as_str(), name.as_str()))
            .chain(self.overrides.as_deref().map(|s| (s, OVERRIDE_SOURCE)))
            .collect();
        Config::from_json_layers(&layers)
    }

    /// How messages name it: the file, or "-s" when there is none.
    pub fn name(&self) -> String {
        match &self.file {
            Some(p) => p.display().to_string(),
            None => OVERRIDE_SOURCE.to_string(),
        }
    }
}
