"""One reader per file format (text.py: .txt/.md, html.py, pdf.py, docx.py, jsonl.py); ``qa.ingest.load`` picks one."""
