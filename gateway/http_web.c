/* The dashboard's files (gateway/web/), embedded in the program when it is
 * built (the assembler's .incbin; the Makefile rebuilds this file when one
 * of them changes). Embedded rather than read from a directory at run
 * time: the gateway binary is the whole deployment, and a dashboard cannot
 * go missing or half-updated beside it. */
#include <string.h>

#include "gateway/http.h"

#define WEB_FILE(sym, file)                                                    \
	__asm__(".section .rodata\n"                                           \
		".global " #sym "\n"                                           \
		".type " #sym ", @object\n"                                    \
		".balign 16\n" #sym ":\n"                                      \
		".incbin \"" file "\"\n"                                       \
		".global " #sym "_end\n" #sym "_end:\n"                        \
		".byte 0\n"                                                    \
		".previous\n");                                                \
	extern const unsigned char sym[], sym##_end[]

WEB_FILE(web_index_html, "gateway/web/index.html");
WEB_FILE(web_app_js, "gateway/web/app.js");
WEB_FILE(web_style_css, "gateway/web/style.css");

const struct http_file *http__web_find(const char *path)
{
	static struct http_file files[3];
	if (!files[0].path) {
		files[0] = (struct http_file){"/index.html",
					      "text/html; charset=utf-8",
					      web_index_html, 0};
		files[0].len = (size_t)(web_index_html_end - web_index_html);
		files[1] = (struct http_file){
		    "/app.js", "text/javascript; charset=utf-8", web_app_js,
		    (size_t)(web_app_js_end - web_app_js)};
		files[2] = (struct http_file){
		    "/style.css", "text/css; charset=utf-8", web_style_css,
		    (size_t)(web_style_css_end - web_style_css)};
	}
	for (size_t i = 0; i < 3; i++)
		if (!strcmp(files[i].path, path))
			return &files[i];
	return NULL;
}
