//! EC2 instance metadata (IMDSv2): the Spot interruption notice.

use std::time::Duration;

const BASE: &str = "http://169.254.169.254/latest";

/// True when EC2 has scheduled this Spot instance for interruption.
pub async fn spot_interruption() -> bool {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(2)).build() {
        Ok(c) => c,
        Err(_) => return false,
    };
    let token = match client
        .put(format!("{BASE}/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => return false,
    };
    match client
        .get(format!("{BASE}/meta-data/spot/instance-action"))
        .header("X-aws-ec2-metadata-token", token)
        .send()
        .await
    {
        // 404 until an interruption is scheduled
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}
