//! A catalog reload, checked before anything changes: the file is read and
//! validated whole, and must keep what the running daemon depends on (its
//! site, the speaker's room of `[audio] area`, the devices `[online]` names).
//! A catalog that fails any of this is refused and the old one keeps serving.

use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::config::Config;

/// A catalog ready to be swapped in.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The validated catalog.
    pub catalog: Catalog,
    /// SHA-256 of the file as read, for the audit record.
    pub sha256: String,
    /// Devices it has that the old one did not.
    pub added: Vec<String>,
    /// Devices the old one had that it does not.
    pub removed: Vec<String>,
}

/// Reads and checks the configured catalog file against the one in use;
/// the error says why it cannot replace it.
pub(crate) fn prepare(config: &Config, current: &Catalog) -> Result<Loaded, String> {
    let path = &config.catalog;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))?;
    let catalog = Catalog::parse(path, &text).map_err(|e| e.to_string())?;
    if catalog.site != current.site {
        return Err(format!(
            "the site changed from '{}' to '{}': topics and the audit log name the site, so that needs a restart",
            current.site, catalog.site
        ));
    }
    let area = &config.audio.area;
    if !area.is_empty() && !catalog.areas.iter().any(|a| &a.name == area) {
        return Err(format!("audio.area '{area}' is not one of the new catalog's areas"));
    }
    if let Some(id) = config.online.devices.keys().find(|id| catalog.device(id).is_none()) {
        return Err(format!("online.devices names '{id}', which the new catalog does not have"));
    }
    let ids = |c: &Catalog| c.devices.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    let (old, new) = (ids(current), ids(&catalog));
    let added = new.iter().filter(|id| !old.contains(id)).cloned().collect();
    let removed = old.iter().filter(|id| !new.contains(id)).cloned().collect();
    Ok(Loaded { catalog, sha256, added, removed })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LAMP: &str = "[[devices]]\nid = \"lamp\"\nname = \"lamp\"\narea = \"kitchen\"\nactions = [\"turn_on\"]\n";

    fn config_for(path: &std::path::Path) -> Config {
        let mut config = Config::parse(path, crate::config::DEFAULT_CONFIG).unwrap();
        config.catalog = path.to_owned();
        config
    }

    #[test]
    fn a_new_site_an_unknown_area_or_a_bad_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.toml");
        let current = Catalog::parse(&path, &format!("site = \"home\"\n{LAMP}")).unwrap();
        let mut config = config_for(&path);

        std::fs::write(
            &path,
            format!("site = \"home\"\n{LAMP}[[devices]]\nid = \"fan\"\nname = \"fan\"\nactions = [\"turn_on\"]\n"),
        )
        .unwrap();
        let loaded = prepare(&config, &current).unwrap();
        assert_eq!((loaded.added, loaded.removed), (vec!["fan".to_owned()], vec![]));
        assert_eq!(loaded.sha256.len(), 64);

        std::fs::write(&path, format!("site = \"plant-7\"\n{LAMP}")).unwrap();
        assert!(prepare(&config, &current).unwrap_err().contains("needs a restart"));

        config.audio.area = "kitchen".into();
        std::fs::write(&path, "site = \"home\"\n[[devices]]\nid = \"fan\"\nname = \"fan\"\nactions = [\"turn_on\"]\n")
            .unwrap();
        assert!(prepare(&config, &current).unwrap_err().contains("audio.area"));

        std::fs::write(&path, "site = \"home\"\n[[devices]]\n").unwrap();
        assert!(prepare(&config, &current).unwrap_err().contains("missing field"));
    }
}
