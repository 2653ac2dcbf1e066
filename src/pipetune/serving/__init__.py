"""Live serving on Ray Serve (`pipetune serve`): the Open Inference Protocol endpoint, one deployment per
(stage, variant, cores), the ingress that walks the DAG, and `RayServeBackend`, which the adapter drives.

Importing this package does not import Ray: `protocol` (the V2 codec) is used by the load generator too.
"""
