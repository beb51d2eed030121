def pytest_configure(config):
    config.addinivalue_line(
        "markers", "checkov: policy scan of the rendered manifests (make manifests-policy installs checkov)"
    )
