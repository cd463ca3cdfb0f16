//! The `[model]` table, tagged by `kind`.

use neurogen_data::{from_table, take_tag};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::VaeConfig;

/// One variant per model family, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    /// Variational autoencoder.
    Vae(VaeConfig),
}

impl ModelConfig {
    const KINDS: &'static [&'static str] = &["vae"];

    /// The family's name as written in `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Vae(_) => "vae",
        }
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(d)?;
        let kind = take_tag(&mut table, "kind", Self::KINDS).map_err(D::Error::custom)?;
        match kind.as_str() {
            "vae" => from_table(table).map(ModelConfig::Vae),
            other => Err(format!("kind: no model family \"{other}\"")),
        }
        .map_err(D::Error::custom)
    }
}
