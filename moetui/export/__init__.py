"""Export a RunConfig as llama.cpp command lines (commandline.export_command, in llama.cpp's own flag
spellings: flags.detect_flags), a llama-cpp-python script (python_snippet.python_snippet) or a config
file; quoting for POSIX shells and PowerShell (quoting.join); exported server lines parse back
(parse.parse_server_text); llama_tools.ensure_llama_tools builds llama.cpp's tools to check them."""
