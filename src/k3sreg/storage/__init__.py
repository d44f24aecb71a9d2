"""The content store, in Docker Distribution's on-disk layout; knows nothing of HTTP.

    store.Store                the async face (one thread hop per operation) that handlers and the cache call
    repository                 the Repository protocol handlers read through; LocalRepository
    blobs.BlobStore            the global blob store, size records, repository links, mounts
    blobwriter.BlobWriter      append while hashing, commit (digest and size checked) or cancel; `feed` overlaps
                               receiving, writing and hashing (uploads and fills)
    uploads.UploadSessions     resumable upload sessions, one request at a time per session
    manifests.ManifestStore    manifests and the referrers index; tags.TagStore: tags
    catalog, purge             the repository list; removal of abandoned uploads and staging files
    fills                      pull-through fill staging shared by worker processes (FillStaging)
    access.AccessClock         last access of cached content
    mark, inventory            what kept manifests need; the reads and removals of a sweep (eviction, GC)
    driver                     Driver (every backend), LockService and LocalFiles (optional); filesystem, memory
    links, paths               link files; every path of the layout
"""
