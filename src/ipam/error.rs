/// Errors from address management.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// Placeholder until the IPAM module lands.
    #[error("invalid IPAM configuration: {0}")]
    Invalid(String),
}
