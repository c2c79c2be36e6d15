//! s3role: mount an S3 bucket (or a prefix of one) as a directory tree, with credentials
//! from an assumed IAM role that renews itself in the background.

pub mod check;
pub mod cli;
pub mod creds;
pub mod daemon;
pub mod docs;
pub mod figures;
pub mod fs;
pub mod fuse;
pub mod heap;
pub mod helper;
pub mod logging;
pub mod mount;
pub mod mount_metrics;
pub mod mount_opts;
pub mod notify;
pub mod status;
pub mod status_file;
pub mod store;
pub mod timefmt;
