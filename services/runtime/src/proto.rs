//! Generated gRPC contracts (from `proto/`, compiled by `build.rs` with protox).

pub mod workflow {
    pub mod v1 {
        tonic::include_proto!("flowfleet.workflow.v1");
    }
}
pub mod execution {
    pub mod v1 {
        tonic::include_proto!("flowfleet.execution.v1");
    }
}
pub mod auth {
    pub mod v1 {
        tonic::include_proto!("flowfleet.auth.v1");
    }
}
pub mod notification {
    pub mod v1 {
        tonic::include_proto!("flowfleet.notification.v1");
    }
}
pub mod analytics {
    pub mod v1 {
        tonic::include_proto!("flowfleet.analytics.v1");
    }
}
pub mod storage {
    pub mod v1 {
        tonic::include_proto!("flowfleet.storage.v1");
    }
}

pub mod privacy {
    pub mod v1 {
        tonic::include_proto!("flowfleet.privacy.v1");
    }
}

/// The encoded descriptor set of every contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flowfleet_descriptor.bin"));
