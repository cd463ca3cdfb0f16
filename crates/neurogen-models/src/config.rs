//! The `[model]` table, tagged by `kind`.

use neurogen_data::{from_table, take_tag, SignalKind};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{GanConfig, LatentOdeConfig, ModelError, RealNvpConfig, VaeConfig};

/// One variant per model family, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    /// Variational autoencoder.
    Vae(VaeConfig),
    /// Generative adversarial network.
    Gan(GanConfig),
    /// RealNVP normalising flow.
    #[serde(rename = "realnvp")]
    RealNvp(RealNvpConfig),
    /// Latent ODE.
    LatentOde(LatentOdeConfig),
}

impl ModelConfig {
    const KINDS: &'static [&'static str] = &["vae", "gan", "realnvp", "latent_ode"];

    /// The family's name as written in `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Vae(_) => "vae",
            ModelConfig::Gan(_) => "gan",
            ModelConfig::RealNvp(_) => "realnvp",
            ModelConfig::LatentOde(_) => "latent_ode",
        }
    }

    /// A copy with data-dependent defaults filled in.
    pub fn resolved(&self, kind: SignalKind) -> ModelConfig {
        match self {
            ModelConfig::Vae(c) => ModelConfig::Vae(c.resolved(kind)),
            ModelConfig::LatentOde(c) => ModelConfig::LatentOde(c.resolved(kind)),
            other => other.clone(),
        }
    }

    /// Checks the config against data of `kind`.
    pub fn check(&self, kind: SignalKind) -> Result<(), ModelError> {
        match self {
            ModelConfig::Vae(c) => c.check(kind),
            ModelConfig::Gan(c) => c.check(kind),
            ModelConfig::RealNvp(c) => c.check(kind),
            ModelConfig::LatentOde(c) => c.check(kind),
        }
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(d)?;
        let kind = take_tag(&mut table, "kind", Self::KINDS).map_err(D::Error::custom)?;
        match kind.as_str() {
            "vae" => from_table(table).map(ModelConfig::Vae),
            "gan" => from_table(table).map(ModelConfig::Gan),
            "realnvp" => from_table(table).map(ModelConfig::RealNvp),
            "latent_ode" => from_table(table).map(ModelConfig::LatentOde),
            other => Err(format!("kind: no model family \"{other}\"")),
        }
        .map_err(D::Error::custom)
    }
}
