//! The operator's file of pre-registered OAuth clients (`--clients-file`).

pub fn load_clients(path: &std::path::Path) -> anyhow::Result<Vec<ConfiguredClient>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the clients file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON list of clients", path.display()))
}

/// A pre-registered client from the operator's clients file.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConfiguredClient {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
}
