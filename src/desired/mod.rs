//! Desired state: what the repository says should run, parsed, interpolated, validated and
//! normalized. Pure apart from reading the stack folders (`load`).
pub mod assemble;
pub mod compose;
pub mod dotenv;
pub mod error;
pub mod file_mount;
pub mod interpolate;
pub mod load;
pub mod model;
pub mod order;
pub mod policy;
pub mod yaml;

pub use error::{DesiredError, Problem};
pub use file_mount::*;
pub use model::*;
