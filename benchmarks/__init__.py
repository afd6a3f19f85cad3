"""Benchmarks of ``qa``: one shared harness (``harness``), the systems compared (``systems``, ``baselines``) and
one script per measurement, each run from the repository root as ``python -m benchmarks.NAME``:

* ``compare``: build, update, query, cold start, memory and disk of ours, the LangChain recipe and BM25 alone;
* ``search_scale``: dense and BM25 search from 10,000 to 1,000,000 chunks;
* ``scale_answer``: whole answers (``Bot.ask``) at 10k and 1M chunks;
* ``rebuild``: adding and removing one article on the whole RealTime QA corpus;
* ``rtqa``: answer quality on RealTime QA 2022 against two baselines;
* ``quote_length``: quote length settings on the ranker's training weeks;
* ``sentence_select``: answer-sentence selection (MAP, MRR, P@1) on WikiQA, TrecQA or SelQA files;
* ``scorer_latency``: warm answer latency of each quote scorer on one index, side by side;
* ``plots``: the figures in docs/ from result files.

Results are JSON files in ``benchmarks/results/`` named by what they measured. ``qa`` never imports this
package; ``training`` may (the ranker's training weeks are read by the harness).
"""
