//! AWS managed policies Wharf ships, with their current AWS documents.
//!
//! ARNs are `arn:aws:iam::aws:policy/<Name>`. Every document parses as a
//! [`PolicyKind::Identity`] policy.

use crate::document::{PolicyDocument, PolicyKind};
use crate::error::PolicyError;

/// An AWS managed policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedPolicy {
    /// The policy name, e.g. `AmazonEC2ContainerRegistryReadOnly`.
    pub name: &'static str,
    /// The policy ARN, e.g. `arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly`.
    pub arn: &'static str,
    /// What the policy grants.
    pub description: &'static str,
    /// The policy document (JSON) of the policy's default version.
    pub document: &'static str,
}

impl ManagedPolicy {
    /// Parses the document as an identity-based policy.
    pub fn parse(&self) -> Result<PolicyDocument, PolicyError> {
        PolicyDocument::parse(self.document, PolicyKind::Identity)
    }

    /// The label naming this policy in decisions: `managed policy <ARN>`.
    pub fn label(&self) -> String {
        format!("managed policy {}", self.arn)
    }
}

const ALL: &[ManagedPolicy] = &[
    ManagedPolicy {
        name: "AdministratorAccess",
        arn: "arn:aws:iam::aws:policy/AdministratorAccess",
        description: "Provides full access to AWS services and resources.",
        document: r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": "*",
      "Resource": "*"
    }
  ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryFullAccess",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess",
        description: "Provides administrative access to Amazon ECR resources.",
        document: r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "ecr:*",
        "cloudtrail:LookupEvents"
      ],
      "Resource": "*"
    },
    {
      "Effect": "Allow",
      "Action": [
        "iam:CreateServiceLinkedRole"
      ],
      "Resource": "*",
      "Condition": {
        "StringEquals": {
          "iam:AWSServiceName": [
            "replication.ecr.amazonaws.com"
          ]
        }
      }
    }
  ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryPowerUser",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser",
        description: "Provides full access to Amazon ECR repositories, but does not allow repository deletion or policy changes.",
        document: r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer",
        "ecr:GetRepositoryPolicy",
        "ecr:DescribeRepositories",
        "ecr:ListImages",
        "ecr:DescribeImages",
        "ecr:BatchGetImage",
        "ecr:GetLifecyclePolicy",
        "ecr:GetLifecyclePolicyPreview",
        "ecr:ListTagsForResource",
        "ecr:DescribeImageScanFindings",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage"
      ],
      "Resource": "*"
    }
  ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryPullOnly",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
        description: "Provides access to pull images from Amazon ECR repositories, including through pull through cache.",
        document: r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchImportUpstreamImage"
      ],
      "Resource": "*"
    }
  ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryReadOnly",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        description: "Provides read-only access to Amazon ECR repositories.",
        document: r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer",
        "ecr:GetRepositoryPolicy",
        "ecr:DescribeRepositories",
        "ecr:ListImages",
        "ecr:DescribeImages",
        "ecr:BatchGetImage",
        "ecr:GetLifecyclePolicy",
        "ecr:GetLifecyclePolicyPreview",
        "ecr:ListTagsForResource",
        "ecr:DescribeImageScanFindings"
      ],
      "Resource": "*"
    }
  ]
}"#,
    },
    ManagedPolicy {
        name: "IAMReadOnlyAccess",
        arn: "arn:aws:iam::aws:policy/IAMReadOnlyAccess",
        description: "Provides read-only access to IAM.",
        document: r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "iam:GenerateCredentialReport",
        "iam:GenerateServiceLastAccessedDetails",
        "iam:Get*",
        "iam:List*",
        "iam:SimulateCustomPolicy",
        "iam:SimulatePrincipalPolicy"
      ],
      "Resource": "*"
    }
  ]
}"#,
    },
];

/// Every managed policy Wharf knows.
pub fn all() -> &'static [ManagedPolicy] {
    ALL
}

/// The managed policy with this ARN.
pub fn by_arn(arn: &str) -> Option<&'static ManagedPolicy> {
    ALL.iter().find(|p| p.arn == arn)
}

/// The managed policy with this name.
pub fn by_name(name: &str) -> Option<&'static ManagedPolicy> {
    ALL.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Effect;

    #[test]
    fn every_document_parses_as_identity_policy() {
        for p in all() {
            let doc = p.parse().unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(doc.version(), "2012-10-17", "{}", p.name);
            assert!(doc.statements().iter().all(|s| s.effect == Effect::Allow));
            assert_eq!(p.arn, format!("arn:aws:iam::aws:policy/{}", p.name));
            assert!(!p.description.is_empty());
            assert_eq!(by_arn(p.arn).map(|m| m.name), Some(p.name));
            assert_eq!(by_name(p.name).map(|m| m.arn), Some(p.arn));
        }
        assert!(by_arn("arn:aws:iam::aws:policy/Nope").is_none());
        let names: Vec<&str> = all().iter().map(|p| p.name).collect();
        for want in [
            "AmazonEC2ContainerRegistryReadOnly",
            "AmazonEC2ContainerRegistryPowerUser",
            "AmazonEC2ContainerRegistryFullAccess",
            "AmazonEC2ContainerRegistryPullOnly",
            "AdministratorAccess",
            "IAMReadOnlyAccess",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
    }
}
