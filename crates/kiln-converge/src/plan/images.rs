//! Container images: a pull for each declared image the host does not hold (after
//! packages, as podman may come with them, and before any unit file and unit state
//! change), and the version changes of services' containers: when the container an image
//! is for runs another image now, the pull and the restart of its unit say so
//! (`synapse v1.117.0 → v1.118.0`). Images are never removed (Podman's prune does that).
//!
//! Must not decide restarts: a container's unit restarts because its quadlet's `Image=`
//! line changed ([`super::units`]); this module only words it.

use super::{Change, Draft, Op};
use crate::podman::{Reference, unit_of_image, version_change};
use crate::resource::{DesiredState, ResourceId};

/// Declared images.
pub(super) fn plan(d: &mut Draft<'_>, desired: &DesiredState) {
    let obs = d.obs;
    for image in &desired.images {
        let running = image
            .container
            .as_ref()
            .and_then(|c| obs.containers.get(c))
            .map(|c| c.image.as_str())
            .filter(|r| !Reference::parse(r).same_image(&Reference::parse(&image.reference)));
        let service = image
            .service
            .as_deref()
            .or(image.container.as_deref())
            .unwrap_or(image.reference.as_str());
        let text = running.map(|before| version_change(service, before, &image.reference));
        if let (Some(text), Some(before), Some(unit)) =
            (&text, running, unit_of_image(desired, image))
        {
            d.image_changes
                .insert(unit.name.clone(), (text.clone(), before.to_owned()));
        }
        if !obs.images.contains(&image.reference) {
            let mut c = Change::new(ResourceId::Image(image.reference.clone()), Op::Pull);
            if let Some(s) = &image.service {
                c.details.push(format!("for service {s}"));
            }
            c.reason = text;
            d.push(c);
        }
    }
}
