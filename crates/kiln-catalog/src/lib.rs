//! kiln's service catalog: one recipe per service kind (synapse, nextcloud, hedgedoc,
//! monitoring, postgres, custom containers, ...), as data: default subdomain, options,
//! secrets needed (with their generation rules), routes, volumes.
