"""fareflow pipelines: compose the components; run locally (kfp.local) or on Kubeflow."""
